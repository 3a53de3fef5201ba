"""RGSNet modeling: the variant table, the spec, the shortcut, blocks, backbones and the C4 head.

Importing it registers ``build_rgsnet_backbone``, ``build_rgsnet_fpn_backbone``,
``build_retinanet_rgsnet_fpn_backbone`` (``BACKBONE_REGISTRY``) and ``RGSNetRes5ROIHeads``
(``ROI_HEADS_REGISTRY``). The names below are the ones used from the package; the rest is
imported from its module (``modeling.blocks``, ``modeling.variants``, ...).
"""
from .backbone import RGSNet, build_rgsnet_backbone, make_rgsnet_stages
from .roi_heads import make_rgsnet_res5
from .shortcuts import ReLUGroupNorm
from .spec import BLOCKS_PER_DEPTH, RGSNetSpec, stage_channels
from .spec_record import IncompatibleCheckpointError
from .variants import VARIANTS
