"""Importing this package registers the RGSNet backbones and the C4 ROI head."""
from .backbone import (
    build_retinanet_rgsnet_fpn_backbone,
    build_rgsnet_backbone,
    build_rgsnet_fpn_backbone,
)
from .blocks import PreactBottleneckBlock, RGSBottleneckBlock
from .roi_heads import RGSNetRes5ROIHeads
from .shortcuts import ReLUGroupNorm
