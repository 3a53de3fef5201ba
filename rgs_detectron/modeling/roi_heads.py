"""C4 ROI head whose res5 stage is built from RGSNet blocks."""
from torch import nn

from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.backbone.resnet import ResNet
from detectron2.modeling.roi_heads import Res5ROIHeads

from .backbone import rgsnet_stage_kwargs

__all__ = ["RGSNetRes5ROIHeads"]


@ROI_HEADS_REGISTRY.register()
class RGSNetRes5ROIHeads(Res5ROIHeads):
    """Detectron2's ``Res5ROIHeads`` with res5 made of the configured RGSNet variant.

    The number of res5 blocks follows the variant's depth (``MODEL.RGSNET``), not a
    fixed 3, so converted ImageNet weights for res5 load into the head.
    """

    @classmethod
    def _build_res5_block(cls, cfg):
        common, num_blocks, widths = rgsnet_stage_kwargs(cfg)
        bottleneck_channels, out_channels = widths[3]
        n = num_blocks[3]
        blocks = ResNet.make_stage(
            num_blocks=n,
            stride_per_block=[2] + [1] * (n - 1),
            in_channels=out_channels // 2,
            out_channels=out_channels,
            bottleneck_channels=bottleneck_channels,
            **common,
        )
        return nn.Sequential(*blocks), out_channels
