"""RGSNet modeling: the variant table, the spec, the shortcut, blocks, backbones and the C4 head.

Importing it registers ``build_rgsnet_backbone``, ``build_rgsnet_fpn_backbone``,
``build_retinanet_rgsnet_fpn_backbone`` (``BACKBONE_REGISTRY``) and ``RGSNetRes5ROIHeads``
(``ROI_HEADS_REGISTRY``).
"""
from .backbone import (
    RGSNet,
    build_retinanet_rgsnet_fpn_backbone,
    build_rgsnet_backbone,
    build_rgsnet_fpn_backbone,
    make_rgsnet_stages,
)
from .blocks import PreactBlock, RGSBlock
from .roi_heads import RGSNetRes5ROIHeads, make_rgsnet_res5
from .shortcuts import ReLUGroupNorm
from .spec import BLOCKS_PER_DEPTH, RGSNetSpec, stage_channels
from .variants import VARIANTS, Variant, get_variant
