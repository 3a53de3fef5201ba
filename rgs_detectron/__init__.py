"""RGSNet backbones (ResNets with a ReLU + GroupNorm shortcut) for Detectron2.

``import rgs_detectron`` registers ``build_rgsnet_backbone``, ``build_rgsnet_fpn_backbone``,
``build_retinanet_rgsnet_fpn_backbone`` and the ``RGSNetRes5ROIHeads`` C4 head.
"""
from .config import VARIANTS, add_rgsnet_config
from . import modeling  # noqa: F401  (registers builders)

__version__ = "0.1.0"
__all__ = ["add_rgsnet_config", "VARIANTS", "__version__"]
