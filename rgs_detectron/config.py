"""The ``MODEL.RGSNET`` config node, and the one way to set up a config and a device.

Only what RGSNet adds lives under ``MODEL.RGSNET``; depth, widths, norm, grouping,
freezing and output features stay on Detectron2's own keys (``MODEL.RESNETS.*``,
``MODEL.BACKBONE.*``). Values are validated where they are used, by
``RGSNetSpec.from_cfg`` (``rgs_detectron/modeling/spec.py``).
"""
import os

import torch

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg

from .errors import ConfigError, UserError, first_line

__all__ = ["add_rgsnet_config", "get_rgsnet_cfg", "resolve_device", "check_cuda", "num_classes"]


def add_rgsnet_config(cfg):
    """Add the ``MODEL.RGSNET`` node (and ``TEST.COCO_EVAL_ENGINE``, ``DATASETS.INVALID_BOXES``)
    to ``cfg`` in place. Idempotent."""
    if "RGSNET" in cfg.MODEL:
        return cfg
    _C = cfg
    _C.MODEL.RGSNET = CN()
    # Block design: original, b-RGS, d-RGS, Res-RGS, RBS, GS, RGB, 2GN or Preact
    # (case-insensitive; the table in rgs_detectron/modeling/variants.py).
    _C.MODEL.RGSNET.VARIANT = "Res-RGS"
    # GroupNorm groups. 0 = the paper's rule: 32 at width 1x (RES2_OUT_CHANNELS 256),
    # scaled with width (8 at 0.25x).
    _C.MODEL.RGSNET.GN_GROUPS = 0
    # Blocks per stage res2..res5. Empty = from MODEL.RESNETS.DEPTH through the
    # depth table (BLOCKS_PER_DEPTH in rgs_detectron/modeling/spec.py). DEPTH 18 or 34
    # means basic blocks (then RES2_OUT_CHANNELS = STEM_OUT_CHANNELS, 64), as in Detectron2.
    _C.MODEL.RGSNET.BLOCKS_PER_STAGE = []
    # Squeeze-and-excitation reduction in the residual branch (Table 9, "Res-RGS+SE").
    # 0 = no SE; 16 is the SE paper's value.
    _C.MODEL.RGSNET.SE_REDUCTION = 0
    # How the RG shortcut is computed: "reference" (plain ops), "lean" (saves only
    # the block input and per-group statistics for backward), "auto" (lean while
    # training on CUDA, reference otherwise and when tracing/exporting).
    _C.MODEL.RGSNET.SHORTCUT_IMPL = "auto"
    # Initial scale of the RG shortcut's GroupNorm in identity blocks: "paper" (1) or "zero"
    # (Res-RGS only: each block starts as F(x) + x, which keeps activations from growing
    # with depth when training from scratch; docs/ARCHITECTURE.md, "Activation growth").
    _C.MODEL.RGSNET.RG_INIT = "paper"
    # COCO evaluation engine: "auto" (faster-coco-eval when installed, else pycocotools),
    # "faster_coco_eval" or "pycocotools". Same AP either way.
    _C.TEST.COCO_EVAL_ENGINE = "auto"
    # Training boxes that cannot be right (negative or zero size, wholly outside the
    # image): "drop" them with a report, or "fail". See rgs_detectron/data/boxes.py.
    _C.DATASETS.INVALID_BOXES = "drop"
    return cfg


def get_rgsnet_cfg(config_file=None, opts=()):
    """Detectron2's defaults + the RGSNet keys + ``config_file`` + ``opts`` (KEY VALUE ...).

    The config is returned unfrozen. A missing file, an unknown key or a bad value raises
    a ConfigError naming the file or key.
    """
    cfg = add_rgsnet_config(get_cfg())
    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"config file {config_file!r} does not exist")
        try:
            cfg.merge_from_file(config_file)
        except (KeyError, ValueError, AssertionError, TypeError, AttributeError) as e:
            raise ConfigError(f"cannot merge config file {config_file!r}: {_yacs_message(e)}") from None
        except Exception as e:  # yaml syntax errors and the like
            raise ConfigError(f"cannot read config file {config_file!r}: {type(e).__name__}: {e}") from None
    opts = list(opts or [])
    if opts:
        if len(opts) % 2:
            raise ConfigError(f"config overrides must be KEY VALUE pairs; got {len(opts)} words: {opts}")
        try:
            cfg.merge_from_list(opts)
        except (KeyError, ValueError, AssertionError, TypeError, AttributeError) as e:
            raise ConfigError(f"bad config override: {_yacs_message(e)}") from None
    return cfg


def num_classes(cfg):
    """(the key, the value) of the detector's class count: RetinaNet keeps it apart from the ROI heads."""
    if "RetinaNet" in cfg.MODEL.META_ARCHITECTURE:
        return "MODEL.RETINANET.NUM_CLASSES", cfg.MODEL.RETINANET.NUM_CLASSES
    return "MODEL.ROI_HEADS.NUM_CLASSES", cfg.MODEL.ROI_HEADS.NUM_CLASSES


def _yacs_message(e):
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    if "RGSNET" in text:
        text += " (RGSNet keys need rgs_detectron.add_rgsnet_config(cfg) first)"
    return text


def resolve_device(requested):
    """The torch device string to run on.

    ``"auto"``: ``"cuda"`` when CUDA is usable, else ``"cpu"``. ``"cpu"``: the CPU.
    ``"cuda"``/``"cuda:N"``: that device, or a UserError with PyTorch's own reason why CUDA
    cannot be used and the fix. Never falls back to the CPU silently.
    """
    requested = str(requested or "auto").lower()
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    index = requested.split(":", 1)[1] if requested.startswith("cuda:") else ("0" if requested == "cuda" else None)
    if index is None or not index.isdigit():
        raise ConfigError(f"device {requested!r} is invalid: choose cpu, cuda, cuda:N or auto")
    check_cuda(int(index) + 1, f"device {requested!r}")
    return requested


def check_cuda(num_devices, what):
    """Raise a UserError with PyTorch's reason unless ``num_devices`` CUDA devices are usable."""
    reason = None
    if not torch.cuda.is_available():
        try:
            torch.cuda.init()
            reason = "torch.cuda.is_available() is False"
        except Exception as e:  # PyTorch says why: no driver, driver too old, CPU-only build, ...
            reason = first_line(e)
    elif torch.cuda.device_count() < num_devices:
        reason = f"{num_devices} GPU(s) needed, {torch.cuda.device_count()} visible"
    if reason:
        raise UserError(
            f"{what} needs CUDA, which PyTorch {torch.__version__} cannot use here: {reason}. "
            "Fix the NVIDIA driver or install a torch build for it (README, 'Install'), "
            "or run on the CPU with MODEL.DEVICE cpu (--device cpu for the demo and export tools)."
        )
