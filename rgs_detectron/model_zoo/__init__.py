"""The configs that ship with rgs_detectron, found the way ``detectron2.model_zoo`` finds its own.

    from rgs_detectron import model_zoo
    cfg = model_zoo.get_config("coco_res_rgs_50.yaml")           # a CfgNode, RGSNet keys added
    lazy = model_zoo.get_config("lazy/coco_res_rgs_50_fpn.py")   # a LazyConfig (omegaconf)
    path = model_zoo.get_config_file("coco_res_rgs_50.yaml")     # the file, inside the installed package

The configs are package data (``rgs_detectron/model_zoo/configs``; a checkout's top-level
``configs`` is a link to that folder), so this works from a plain ``pip install`` with
no checkout at hand.
"""
import os
from importlib import resources

from ..config import get_rgsnet_cfg, load_lazy_config
from ..errors import ConfigError

__all__ = ["get_config_file", "get_config", "list_configs"]


def _root():
    return str(resources.files(__name__) / "configs")


def list_configs():
    """Every shipped config, as the name ``get_config`` takes."""
    root, names = _root(), []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(("_", ".")) and d != "common"]  # common/: a LazyConfig's parts
        names += [
            os.path.relpath(os.path.join(folder, f), root) for f in files
            if f.endswith((".yaml", ".py")) and not f.startswith(("Base-", "_"))
        ]
    return sorted(names)


def get_config_file(config_path):
    """The absolute path of a shipped config, e.g. ``get_config_file("coco_res_rgs_50.yaml")``.

    Only files inside the shipped folder: an absolute path or one leading out of it is refused,
    not returned as if it were a shipped config.
    """
    root = _root()
    path = os.path.join(root, config_path) if isinstance(config_path, (str, os.PathLike)) else ""  # None: refused
    inside = path and os.path.commonpath([os.path.realpath(root), os.path.realpath(path)]) == os.path.realpath(root)
    if not (inside and path.endswith((".yaml", ".py")) and os.path.isfile(path)):
        raise ConfigError(f"{config_path!r} is not a shipped config; choose one of: {', '.join(list_configs())}")
    return path


def get_config(config_path, trained=False):
    """A ready config: a CfgNode (RGSNet keys added) for ``.yaml``, a LazyConfig for ``.py``.

    ``trained`` is ``detectron2.model_zoo.get_config``'s: no trained detector ships with
    rgs_detectron, so ``trained=True`` is refused rather than returning untrained weights.
    """
    if trained:
        raise ConfigError(f"get_config({config_path!r}, trained=True): no trained detector weights ship with "
                          "rgs_detectron; train one with train_net and set MODEL.WEIGHTS (train.init_checkpoint) "
                          "to its model_final.pth, or pass trained=False")
    path = get_config_file(config_path)
    return load_lazy_config(path) if path.endswith(".py") else get_rgsnet_cfg(path)
