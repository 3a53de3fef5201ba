"""RGSNet backbones (ResNets with a ReLU + GroupNorm shortcut) for Detectron2.

Using the package registers ``build_rgsnet_backbone``, ``build_rgsnet_fpn_backbone``,
``build_retinanet_rgsnet_fpn_backbone``, the ``RGSNetRes5ROIHeads`` C4 head and the built-in
digits datasets with Detectron2: ``from rgs_detectron import add_rgsnet_config`` (or any name
below), ``rgs_detectron.model_zoo`` and ``import rgs_detectron.modeling`` all do. The names are
imported on first use (PEP 562), so that ``import rgs_detectron`` alone, and with it every
command line's ``--help``, loads neither torch nor Detectron2. Where things live:
docs/ARCHITECTURE.md.
"""
import importlib
import importlib.util

if importlib.util.find_spec("detectron2") is None:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "rgs_detectron needs Detectron2, which is not importable here. Detectron2 is not on PyPI under its own "
        "name: run the project's set-up (bash tools/setup_env.sh) or install it as docs/INSTALL.md says.")

__version__ = "0.2.0"
_PUBLIC = {
    "add_rgsnet_config": "config", "get_rgsnet_cfg": "config", "load_weights": "checkpoint", "RGSNet": "modeling",
    "RGSNetSpec": "modeling", "VARIANTS": "modeling"
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
