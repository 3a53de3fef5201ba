"""RGSNet backbones, registered in Detectron2's ``BACKBONE_REGISTRY``.

The stem and the stage bookkeeping (output names, strides, freezing) are Detectron2's
own ``BasicStem`` and ``ResNet``; only the blocks differ. Outputs are ``res2``..``res5``
(strides 4..32), so Detectron2's FPN, RPN and ROI-head configs work unchanged.
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7
from detectron2.modeling.backbone.resnet import BasicStem, ResNet

from ..config import (
    blocks_per_stage,
    canonical_variant,
    check_groups_divide,
    gn_groups,
    se_reduction,
    shortcut_impl,
)
from .blocks import make_block_kwargs

__all__ = [
    "build_rgsnet_backbone",
    "build_rgsnet_fpn_backbone",
    "build_retinanet_rgsnet_fpn_backbone",
    "rgsnet_stage_kwargs",
]


def rgsnet_stage_kwargs(cfg):
    """Validated arguments shared by the backbone stages and the C4 res5 head.

    Returns (block_class, common kwargs, blocks per stage, channel widths).
    """
    res = cfg.MODEL.RESNETS
    variant = canonical_variant(cfg.MODEL.RGSNET.VARIANT)
    num_blocks = blocks_per_stage(cfg)
    groups = gn_groups(cfg)
    if res.RES5_DILATION not in (1, 2):
        raise ValueError(f"cfg.MODEL.RESNETS.RES5_DILATION = {res.RES5_DILATION!r} is invalid: choose 1 or 2")
    if any(res.DEFORM_ON_PER_STAGE):
        raise ValueError(
            "cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = "
            f"{list(res.DEFORM_ON_PER_STAGE)!r} is invalid: RGSNet blocks have no deformable "
            "variant; set it to [False, False, False, False]"
        )
    block_class, extra = make_block_kwargs(variant, groups, se_reduction(cfg), shortcut_impl(cfg))
    common = dict(
        block_class=block_class,
        num_groups=res.NUM_GROUPS,
        norm=res.NORM,
        stride_in_1x1=res.STRIDE_IN_1X1,
        **extra,
    )
    bottleneck = res.NUM_GROUPS * res.WIDTH_PER_GROUP
    widths = [(bottleneck * 2**i, res.RES2_OUT_CHANNELS * 2**i) for i in range(4)]
    if variant != "Preact":
        # Validate every channel count a GroupNorm will meet, before building anything.
        for i, (bottle, out) in enumerate(widths):
            check_groups_divide(groups, out, f"res{i + 2} (output)")
            check_groups_divide(groups, bottle, f"res{i + 2} (bottleneck)")
    return common, num_blocks, widths


@BACKBONE_REGISTRY.register()
def build_rgsnet_backbone(cfg, input_shape):
    """RGSNet bottom-up backbone: Detectron2's ResNet with RGSNet blocks.

    ``MODEL.RGSNET.VARIANT`` picks the block; everything else follows ``MODEL.RESNETS``
    and ``MODEL.BACKBONE.FREEZE_AT`` exactly as for ``build_resnet_backbone``.
    """
    res = cfg.MODEL.RESNETS
    common, num_blocks, widths = rgsnet_stage_kwargs(cfg)
    stem = BasicStem(in_channels=input_shape.channels, out_channels=res.STEM_OUT_CHANNELS, norm=res.NORM)

    out_features = res.OUT_FEATURES
    last_stage = max({"res2": 2, "res3": 3, "res4": 4, "res5": 5}.get(f, 0) for f in out_features)
    stages = []
    in_channels = res.STEM_OUT_CHANNELS
    for idx, stage_idx in enumerate(range(2, last_stage + 1)):
        dilation = res.RES5_DILATION if stage_idx == 5 else 1
        first_stride = 1 if idx == 0 or (stage_idx == 5 and dilation == 2) else 2
        bottleneck_channels, out_channels = widths[idx]
        stages.append(
            ResNet.make_stage(
                num_blocks=num_blocks[idx],
                stride_per_block=[first_stride] + [1] * (num_blocks[idx] - 1),
                in_channels=in_channels,
                out_channels=out_channels,
                bottleneck_channels=bottleneck_channels,
                dilation=dilation,
                **common,
            )
        )
        in_channels = out_channels
    return ResNet(stem, stages, out_features=out_features, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


def _fpn(cfg, bottom_up, top_block):
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_rgsnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """RGSNet + FPN (P2..P6), as ``build_resnet_fpn_backbone``."""
    return _fpn(cfg, build_rgsnet_backbone(cfg, input_shape), LastLevelMaxPool())


@BACKBONE_REGISTRY.register()
def build_retinanet_rgsnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """RGSNet + FPN with P6/P7 from res5, as ``build_retinanet_resnet_fpn_backbone``."""
    bottom_up = build_rgsnet_backbone(cfg, input_shape)
    in_channels_p6p7 = bottom_up.output_shape()["res5"].channels
    return _fpn(cfg, bottom_up, LastLevelP6P7(in_channels_p6p7, cfg.MODEL.FPN.OUT_CHANNELS))
