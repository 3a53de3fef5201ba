"""The ``MODEL.RGSNET`` config node, and the one way to set up a config and a device.

Only what RGSNet adds lives under ``MODEL.RGSNET``; depth, widths, norm, grouping,
freezing and output features stay on Detectron2's own keys (``MODEL.RESNETS.*``,
``MODEL.BACKBONE.*``). Values are validated where they are used, by
``RGSNetSpec.from_cfg`` (``rgs_detectron/modeling/spec.py``). Every way to a config passes
here, so importing this module registers the backbones, the C4 head and the digits datasets.
"""
import difflib
import inspect
import os

import torch
from omegaconf import OmegaConf

from detectron2.config import CfgNode as CN
from detectron2.config import LazyConfig, get_cfg
from detectron2.utils.registry import locate

from . import modeling  # noqa: F401  (registers the backbones and the C4 head)
from .data import builtin  # noqa: F401  (registers the digits datasets)
from .errors import ConfigError, UserError, first_line
from .utils.plain_yaml import read_yaml

__all__ = ["add_rgsnet_config", "get_rgsnet_cfg", "load_lazy_config", "resolve_device", "check_cuda", "num_classes"]


def add_rgsnet_config(cfg):
    """Add the ``MODEL.RGSNET`` node (and ``TEST.COCO_EVAL_ENGINE``, ``DATASETS.INVALID_BOXES``)
    to ``cfg`` in place. Idempotent."""
    if "RGSNET" in cfg.MODEL:
        return cfg
    cfg.MODEL.RGSNET = CN()
    # Block design: original, b-RGS, d-RGS, Res-RGS, RBS, GS, RGB, 2GN or Preact
    # (case-insensitive; the table in rgs_detectron/modeling/variants.py).
    cfg.MODEL.RGSNET.VARIANT = "Res-RGS"
    # GroupNorm groups. 0 = the paper's rule (Sec. 3): 32 at width 1x (RES2_OUT_CHANNELS 256),
    # scaled with width (8 at 0.25x; other widths: our extrapolation).
    cfg.MODEL.RGSNET.GN_GROUPS = 0
    # Blocks per stage res2..res5. Empty = from MODEL.RESNETS.DEPTH through the
    # depth table (BLOCKS_PER_DEPTH in rgs_detectron/modeling/spec.py). DEPTH 18 or 34
    # means basic blocks (then RES2_OUT_CHANNELS = STEM_OUT_CHANNELS, 64), as in Detectron2.
    cfg.MODEL.RGSNET.BLOCKS_PER_STAGE = []
    # Squeeze-and-excitation reduction in the residual branch (Table 9, "Res-RGS+SE").
    # 0 = no SE; 16 is the SE paper's value.
    cfg.MODEL.RGSNET.SE_REDUCTION = 0
    # How the RG shortcut is computed: "reference" (plain ops), "lean" (saves only
    # the block input and per-group statistics for backward), "auto" (lean while
    # training on CUDA, reference otherwise and when tracing/exporting).
    cfg.MODEL.RGSNET.SHORTCUT_IMPL = "auto"
    # Initial scale of the RG shortcut's GroupNorm in identity blocks: "paper" (1) or "zero"
    # (Res-RGS only: each block starts as F(x) + x, which keeps activations from growing
    # with depth when training from scratch; docs/ARCHITECTURE.md, "Activation growth").
    cfg.MODEL.RGSNET.RG_INIT = "paper"
    # COCO evaluation engine: "auto" (faster-coco-eval when installed, else pycocotools),
    # "faster_coco_eval" or "pycocotools". Same AP either way.
    cfg.TEST.COCO_EVAL_ENGINE = "auto"
    # Training boxes that cannot be right (NaN or infinite, negative or zero size, wholly outside the
    # image): "drop" them with a report, or "fail". See rgs_detectron/data/boxes.py.
    cfg.DATASETS.INVALID_BOXES = "drop"
    return cfg


class PlainYamlCfgNode(CN):
    """Detectron2's ``CfgNode`` whose files are read by ``utils/plain_yaml.read_yaml`` (plain data: no code, no key
    given twice, no endless anchors), each ``_BASE_`` checked: a cycle or a base that is not a config is one line."""

    @classmethod
    def load_yaml_with_base(cls, filename, allow_unsafe=False, inherited_by=None, chain=()):
        chain = (*chain, os.path.realpath(filename))
        if chain[-1] in chain[:-1]:
            raise ConfigError(f"config files inherit each other in a cycle: {' -> _BASE_ '.join(chain)}; remove a "
                              "_BASE_ line")
        cfg = read_yaml(filename, inherited_by)
        bases = cfg.pop("_BASE_", [])
        merged = {}
        for base in bases if isinstance(bases, list) else [bases]:
            path = os.path.join(os.path.dirname(filename), os.path.expanduser(str(base)))
            if not os.path.isfile(path):
                raise ConfigError(f"config file {filename}: its _BASE_ {path} does not exist")
            _merge_into(merged, cls.load_yaml_with_base(path, inherited_by=filename, chain=chain))
        return _merge_into(merged, cfg)


def _merge_into(base, cfg):
    """``cfg``'s keys into ``base``, node by node (``_BASE_`` inheritance); returns ``base``."""
    for key, value in cfg.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge_into(base[key], value)
        else:
            base[key] = value
    return base


def get_rgsnet_cfg(config_file=None, opts=()):
    """Detectron2's defaults + the RGSNet keys + ``config_file`` + ``opts`` (KEY VALUE ...).

    The config is returned unfrozen. A missing file, an unknown key or a bad value raises
    a ConfigError naming the file or key. The file and every ``_BASE_`` it inherits are read
    as plain data (``PlainYamlCfgNode``): Detectron2 falls back to ``yaml.unsafe_load``, which
    runs any Python a ``!!python/...`` tag names; here such a tag is refused, naming the file and the tag.
    """
    cfg = PlainYamlCfgNode(add_rgsnet_config(get_cfg()))
    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"config file {config_file!r} does not exist")
        try:
            cfg.merge_from_file(config_file)
        except ConfigError:
            raise
        except (KeyError, ValueError, AssertionError, TypeError, AttributeError) as e:
            raise ConfigError(f"cannot merge config file {config_file!r}: {_yacs_message(e)}") from None
    opts = list(opts or [])
    _check_option_order(opts, "KEY VALUE")
    if len(opts) % 2:
        raise ConfigError(f"config overrides must be KEY VALUE pairs; got {len(opts)} words: {opts}")
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError, TypeError, AttributeError) as e:
        raise ConfigError(f"bad config override: {_yacs_message(e)}") from None
    _check_pixel_stats(cfg)
    return cfg


def _check_option_order(overrides, kind):
    """An option among the overrides was given after them: argparse took it for an override."""
    option = next((word for word in overrides if str(word).startswith("--")), None)
    if option:
        raise ConfigError(f"{option} comes after the {kind} overrides, where it is read as one: options go before "
                          "the overrides (e.g. --config-file F --no-progress MODEL.DEVICE cpu)")


def _check_pixel_stats(cfg):
    """One value per input channel in MODEL.PIXEL_MEAN and PIXEL_STD (a 468-line log and a traceback otherwise):
    the channels of the INPUT.FORMATs Detectron2's ``read_image`` knows; for others, the mean's length."""
    channels = {"BGR": 3, "RGB": 3, "YUV-BT.601": 3, "L": 1}.get(cfg.INPUT.FORMAT, len(cfg.MODEL.PIXEL_MEAN))
    for key in ("PIXEL_MEAN", "PIXEL_STD"):
        if len(cfg.MODEL[key]) != channels:
            raise ConfigError(f"MODEL.{key} has {len(cfg.MODEL[key])} values but INPUT.FORMAT {cfg.INPUT.FORMAT} "
                              f"images have {channels} channels: give one value per channel")


def load_lazy_config(path, overrides=()):
    """The LazyConfig of ``path`` with ``key=value`` overrides, or a ConfigError naming the problem.

    A ``.py`` LazyConfig is a Python file, run as it is loaded: treat it like code you run. A
    ``.yaml`` one (such as the ``config.yaml`` a run saves) is read as plain data (``read_yaml``,
    then OmegaConf, as Detectron2 builds it), never with Detectron2's ``yaml.unsafe_load``. An
    override must name a key the config has (or a parameter its ``_target_`` takes): a typo such as
    ``train.max_itr=5`` would otherwise be added and never read. Hydra's ``+key=value`` adds a
    key on purpose.
    """
    try:
        if str(path).endswith((".yaml", ".yml")):
            cfg = OmegaConf.create(read_yaml(path), flags={"allow_objects": True})
        else:
            cfg = LazyConfig.load(path)
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError(f"config file {path!r} does not exist") from None
    except Exception as e:
        raise ConfigError(f"cannot load LazyConfig {path!r}: {type(e).__name__}: {e}") from None
    overrides = list(overrides)
    _check_option_order(overrides, "key=value")
    for i, override in enumerate(overrides):
        if "=" not in override:
            value = overrides[i + 1] if i + 1 < len(overrides) and "=" not in overrides[i + 1] else "VALUE"
            raise ConfigError(f"bad override {override!r}: LazyConfig overrides are key=value, e.g. "
                              f"{override}={value} (KEY VALUE pairs are for yaml configs and train_net)")
        key = override.split("=", 1)[0]
        problem = None if key.startswith(("+", "~")) else _lazy_key_problem(cfg, key)
        if problem:
            raise ConfigError(f"bad override {override!r}: {problem}")
    try:
        return LazyConfig.apply_overrides(cfg, overrides)
    except Exception as e:
        raise ConfigError(f"bad override in {overrides} (LazyConfig overrides are key=value): {e}") from None


def _lazy_key_problem(cfg, key):
    """Why ``key`` is neither a key of ``cfg`` nor a parameter the ``_target_`` of its node takes (with the near
    matches), or None."""
    node, parts = cfg, key.split(".")
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth + 1])
        if OmegaConf.is_list(node) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not OmegaConf.is_dict(node):
            return f"{'.'.join(parts[:depth])} is a value, not a node with keys"
        if part in node:
            node = OmegaConf.select(node, part, throw_on_resolution_failure=False)
            continue
        params = _target_parameters(node.get("_target_"))
        if params is None or part in params:  # None: the target takes any keyword
            return None
        known = list(dict.fromkeys([k for k in node.keys() if k != "_target_"] + sorted(params)))
        near = difflib.get_close_matches(part, known, n=3, cutoff=0.6)
        prefix = here[:-len(part)]
        hint = f"did you mean {' or '.join(prefix + n for n in near)}?" if near else \
            f"{prefix.rstrip('.') or 'the config'} has {', '.join(prefix + k for k in known)}"
        return f"{here} is not a key of this LazyConfig; {hint} (+{key}=... adds it on purpose)"
    return None


def _target_parameters(target):
    """The keyword names ``target`` (a LazyCall's ``_target_``) takes: a set, None for any, empty for no target."""
    if target is None:
        return set()
    try:
        params = inspect.signature(locate(target) if isinstance(target, str) else target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def num_classes(cfg):
    """(the key, the value) of the detector's class count: RetinaNet keeps it apart from the ROI heads."""
    head = "RETINANET" if "RetinaNet" in cfg.MODEL.META_ARCHITECTURE else "ROI_HEADS"
    return f"MODEL.{head}.NUM_CLASSES", cfg.MODEL[head].NUM_CLASSES


def _yacs_message(e):
    """yacs's message (a KeyError's without the quotes repr adds). Here the RGSNet keys are always added, so an unknown
    ``MODEL.RGSNET.*`` key is a typo, not a forgotten ``add_rgsnet_config``."""
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


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


def check_cuda(num_devices, what, cpu="MODEL.DEVICE cpu (--device cpu for the demo and export tools)"):
    """Raise a UserError with PyTorch's reason unless ``num_devices`` CUDA devices are usable; ``cpu``: the setting
    that runs on the CPU instead."""
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
        raise UserError(f"{what} needs CUDA, which PyTorch {torch.__version__} cannot use here: {reason}. Fix the "
                        "NVIDIA driver or install a torch build for it (docs/INSTALL.md), or run on the CPU with "
                        f"{cpu}.")
