"""RGSNet backbones: Detectron2's ResNet made of RGSNet blocks, from an ``RGSNetSpec``.

The stem and the stage bookkeeping (output names, strides, freezing) are Detectron2's own
``BasicStem`` and ``ResNet``; only the blocks differ. Outputs are ``res2``..``res5``
(strides 4..32), so Detectron2's FPN, RPN and ROI-head configs work unchanged.

Three ways in, one description:

* yacs configs: the registered builders ``build_rgsnet_backbone``,
  ``build_rgsnet_fpn_backbone`` and ``build_retinanet_rgsnet_fpn_backbone``
  (``MODEL.BACKBONE.NAME``), which read ``RGSNetSpec.from_cfg``;
* LazyConfig: ``L(RGSNet)(variant="Res-RGS", depth=50, norm="FrozenBN",
  out_features=[...], freeze_at=2)``, the keywords of ``RGSNetSpec.create``;
* Python: :func:`make_rgsnet_stages`, config-free, in the style of
  ``ResNet.make_default_stages``.
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7
from detectron2.modeling.backbone.resnet import BasicStem, ResNet

from ..errors import ConfigError
from .blocks import PreactBlock, RGSBlock
from .spec import RGSNetSpec
from .spec_record import CarriesSpec

__all__ = [
    "RGSNet",
    "make_rgsnet_stages",
    "build_rgsnet_backbone",
    "build_rgsnet_fpn_backbone",
    "build_retinanet_rgsnet_fpn_backbone",
]

_STAGE_INDEX = {"res2": 2, "res3": 3, "res4": 4, "res5": 5}


def make_rgsnet_stages(spec: RGSNetSpec, first=2, last=5, *, block_class=None):
    """The blocks of stages ``res{first}``..``res{last}``, as lists (``ResNet(stem, stages)``).

    The first block of each stage changes the width and (except in res2, or res5 when
    dilated) halves the resolution; the first stage's input is the stem's output.
    ``block_class``: RGSBlock, or PreactBlock for Preact, unless given (the classifier's
    torchvision-named subclasses).
    """
    block_class = block_class or (PreactBlock if spec.variant.preact else RGSBlock)
    widths = spec.stage_widths()
    stages = []
    for stage in range(first, last + 1):
        i = stage - 2
        bottleneck_channels, out_channels = widths[i]
        in_channels = spec.stem_channels if stage == 2 else widths[i - 1][1]
        dilation = spec.res5_dilation if stage == 5 else 1
        first_stride = 1 if stage == 2 or dilation > 1 else 2
        n = spec.blocks_per_stage[i]
        extra = {}
        if spec.variant.preact:
            # He et al.: the stem's BN-ReLU is the first block's pre-activation.
            extra["preactivate_input_per_block"] = [stage != 2] + [True] * (n - 1)
        stages.append(
            ResNet.make_stage(
                block_class,
                n,
                in_channels=in_channels,
                out_channels=out_channels,
                bottleneck_channels=bottleneck_channels,
                stride_per_block=[first_stride] + [1] * (n - 1),
                dilation=dilation,
                spec=spec,
                **extra,
            ))
    return stages


class RGSNet(CarriesSpec, ResNet):
    """Detectron2's ``ResNet`` with the blocks of an RGSNet; its state dict records its spec (``spec_record``).

    Args:
        out_features, freeze_at: as ``ResNet`` (stages past the last output are dropped).
        spec: an :class:`RGSNetSpec`; or, instead, its description as keywords
            (``variant``, ``depth``, ``width_mult``, ``norm``, ... of ``RGSNetSpec.create``).
    """

    def __init__(self, *, out_features=None, freeze_at=0, spec=None, **description):
        spec = RGSNetSpec.resolve(spec, description, "RGSNet")
        if spec.stem != "imagenet":
            raise ConfigError(f"stem = {spec.stem!r}: the small-image stem is for 28-32 pixel classification; "
                              "detection backbones use the ImageNet stem (stem='imagenet')")
        unknown = [f for f in out_features or [] if f != "stem" and f not in _STAGE_INDEX]
        if unknown:
            raise ConfigError(f"MODEL.RESNETS.OUT_FEATURES has {unknown}: choose from stem, res2, res3, res4, res5")
        stem = BasicStem(in_channels=spec.in_channels, out_channels=spec.stem_channels, norm=spec.norm)
        # Every stage, as Detectron2's builder: ResNet drops those past the last output after they drew.
        super().__init__(stem, make_rgsnet_stages(spec), out_features=out_features, freeze_at=freeze_at)
        self.spec = spec


@BACKBONE_REGISTRY.register()
def build_rgsnet_backbone(cfg, input_shape: ShapeSpec):
    """RGSNet bottom-up backbone; ``MODEL.RGSNET`` picks the blocks, everything else follows
    ``MODEL.RESNETS`` and ``MODEL.BACKBONE.FREEZE_AT`` as for ``build_resnet_backbone``."""
    return RGSNet(
        spec=RGSNetSpec.from_cfg(cfg, in_channels=input_shape.channels),
        out_features=cfg.MODEL.RESNETS.OUT_FEATURES,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )


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
