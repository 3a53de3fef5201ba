"""RGSNet backbones (ResNets with a ReLU + GroupNorm shortcut) for Detectron2.

``import rgs_detectron`` registers ``build_rgsnet_backbone``, ``build_rgsnet_fpn_backbone``,
``build_retinanet_rgsnet_fpn_backbone``, the ``RGSNetRes5ROIHeads`` C4 head and the
built-in digits datasets. Where things live: docs/ARCHITECTURE.md.
"""
try:
    import detectron2  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "rgs_detectron needs Detectron2, which is not importable here "
        f"({e}). Detectron2 is not on PyPI under its own name: run the project's set-up "
        "(bash tools/setup_env.sh) or install it as the README's 'Install' section says."
    ) from e

from .config import add_rgsnet_config, get_rgsnet_cfg
from . import modeling  # noqa: F401  (registers the backbones and the C4 head)
from . import data  # noqa: F401  (registers the built-in digits datasets)
from .modeling import VARIANTS, RGSNet, RGSNetSpec
from .checkpoint import load_weights

__version__ = "0.2.0"
__all__ = ["add_rgsnet_config", "get_rgsnet_cfg", "load_weights", "RGSNet", "RGSNetSpec", "VARIANTS", "__version__"]
