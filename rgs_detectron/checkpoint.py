"""Convert ImageNet classification checkpoints (RGSNet or torchvision ResNet) to Detectron2.

The input is a torchvision-style state dict (see ``rgs_detectron.classification``); the
output is the dict Detectron2's ``DetectionCheckpointer`` reads::

    {"model": {name: tensor}, "__author__": "rgs_detectron", "matching_heuristics": True}

Names in ``model`` are those of the bottom-up backbone (``stem.conv1.weight``,
``res2.0.conv1.norm.running_mean``, ...), like every ImageNet checkpoint Detectron2 ships.
``matching_heuristics`` is True so the checkpointer finds them wherever the backbone sits
in the detector: ``backbone.bottom_up.*`` (FPN), ``backbone.*`` plus ``roi_heads.res5.*``
(C4). With False it would require the full detector's names and load nothing.

Safety and validation, in order: the input is read with ``torch.load(weights_only=True)``
only (a pickle that would run code is refused, never executed); names go through an
explicit map (after optional ``--rename`` rules); every tensor is checked by name and
shape against the target backbone built from the same description the user fine-tunes
with; the output is written atomically, so a failure never leaves a file behind.
"""
import logging
import os
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec

from .classification import rgsnet_cfg
from .config import add_rgsnet_config, canonical_variant
from .fileio import atomic_write
from .modeling.backbone import build_rgsnet_backbone

__all__ = [
    "ConversionError",
    "ConversionResult",
    "PYTORCH_INPUT_SETTINGS",
    "load_state_dict",
    "parse_rename",
    "apply_renames",
    "classifier_to_d2_name",
    "map_names",
    "target_cfg",
    "expected_shapes",
    "required_settings",
    "settings_yaml",
    "settings_opts",
    "save_d2_checkpoint",
    "convert_checkpoint",
]

logger = logging.getLogger(__name__)

# What torchvision-style training implies (DESIGN.md section 4): RGB input in 0..255,
# normalized with ImageNet statistics, stride in the 3x3 conv.
PYTORCH_INPUT_SETTINGS = OrderedDict(
    [
        ("INPUT.FORMAT", "RGB"),
        ("MODEL.PIXEL_MEAN", [123.675, 116.280, 103.530]),
        ("MODEL.PIXEL_STD", [58.395, 57.120, 57.375]),
        ("MODEL.RESNETS.STRIDE_IN_1X1", False),
    ]
)
_BN_BUFFERS = ("weight", "bias", "running_mean", "running_var")
_EXTRAS = ("shortcut_norm", "inner_norm", "output_norm", "relu_norm1", "relu_norm2", "se")
_LIST_LIMIT = 30
# Variants whose blocks hold the same tensors (they differ only in how they are combined).
_SAME_TENSORS = {"b-RGS": "GS", "GS": "b-RGS", "d-RGS": "Res-RGS", "Res-RGS": "d-RGS"}


class ConversionError(ValueError):
    """The checkpoint cannot be converted as asked; nothing was written."""


# ----------------------------------------------------------------------------- reading


def load_state_dict(path):
    """Read a tensor-only state dict from a ``.pth``/``.pth.tar``/``.pt`` file.

    Accepts the state dict itself or one under ``state_dict``/``model``; strips the
    ``module.`` prefix that (Distributed)DataParallel adds. Never unpickles arbitrary
    objects: ``weights_only=True`` refuses them before anything runs.
    """
    if not os.path.isfile(path):
        raise ConversionError(f"input checkpoint {path!r} does not exist or is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            raise ConversionError(
                f"{path!r} is not a plain tensor checkpoint: it holds Python objects other than "
                "tensors and containers (for example numpy arrays or classes that would run code "
                "when unpickled). It was refused and not executed. Re-save only the state dict "
                "(torch.save(model.state_dict(), path)) from a source you trust."
            ) from None
        raise ConversionError(f"{path!r} cannot be read as a PyTorch checkpoint ({e})") from None
    except Exception as e:  # truncated zip, garbage, empty file, ...
        raise ConversionError(
            f"{path!r} cannot be read as a PyTorch checkpoint; is it truncated or corrupt? "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no detail'})"
        ) from None

    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(f"{path!r} holds no state dict (found {type(obj).__name__})")
    not_tensors = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ConversionError(f"{path!r}: these entries are not tensors: {_short_list(not_tensors)}")
    return OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in obj.items())


# ----------------------------------------------------------------------------- renaming


def parse_rename(text):
    """``"REGEX=REPLACEMENT"`` -> (compiled regex, replacement). Splits at the first ``=``."""
    pattern, sep, repl = text.partition("=")
    if not sep or not pattern:
        raise ConversionError(f"rename rule {text!r} must look like REGEX=REPLACEMENT")
    try:
        return re.compile(pattern), repl
    except re.error as e:
        raise ConversionError(f"rename rule {text!r}: bad regular expression ({e})") from None


def apply_renames(state_dict, rules):
    """Apply ``re.sub`` rules in order to every name.

    A name that a rule turns into the empty string is dropped (for tensors that belong to
    neither network, e.g. a momentum encoder). Returns (new dict, new -> old name,
    [(old name, why dropped)]).
    """
    rules = [parse_rename(r) if isinstance(r, str) else r for r in rules]
    out, origin, dropped = OrderedDict(), {}, []
    for name, value in state_dict.items():
        new = name
        for pattern, repl in rules:
            try:
                new = pattern.sub(repl, new)
            except (re.error, IndexError) as e:
                raise ConversionError(f"rename rule {pattern.pattern!r}={repl!r} failed on {name!r}: {e}") from None
        if not new:
            dropped.append((name, "renamed to nothing by --rename"))
            continue
        if new in out:
            raise ConversionError(f"rename rules map both {origin[new]!r} and {name!r} to {new!r}")
        out[new] = value
        origin[new] = name
    return out, origin, dropped


# ----------------------------------------------------------------------------- name map

_STEM = re.compile(r"^conv1\.weight$|^bn1\.(?P<bn>\w+)$")
_BLOCK = re.compile(r"^layer(?P<stage>[1-4])\.(?P<idx>\d+)\.(?P<rest>.+)$")


def classifier_to_d2_name(name, preact=False):
    """Map one classifier name to its Detectron2 backbone name.

    Returns (new name or None, why dropped). ``conv1``/``bn1`` -> ``stem.conv1[.norm]``;
    ``layerN.i`` -> ``res{N+1}.i``; ``bnK`` -> ``convK.norm`` (Preact: ``normK``, since
    its norms precede the convs); ``downsample.0/1`` -> ``shortcut``/``shortcut.norm``;
    the variant's extra modules keep their names. Unrecognized names pass through
    unchanged and are then reported as unknown by the shape check.
    """
    if name.endswith(".num_batches_tracked") or name == "num_batches_tracked":
        return None, "BN step counter, unused by Detectron2's norms"
    if name.startswith("fc."):
        return None, "classifier head (not part of the backbone)"
    if name.startswith("final_norm."):
        return None, "Preact's BN before pooling (res5 is the last block's raw output)"
    m = _STEM.match(name)
    if m:
        return ("stem.conv1.weight" if m.group("bn") is None else f"stem.conv1.norm.{m.group('bn')}"), None
    m = _BLOCK.match(name)
    if not m:
        return name, None
    prefix = f"res{int(m.group('stage')) + 1}.{m.group('idx')}."
    rest = m.group("rest")
    bn = re.match(r"^bn([1-3])\.(.+)$", rest)
    if bn:
        rest = f"norm{bn.group(1)}.{bn.group(2)}" if preact else f"conv{bn.group(1)}.norm.{bn.group(2)}"
    elif rest.startswith("downsample.0."):
        rest = "shortcut." + rest[len("downsample.0."):]
    elif rest.startswith("downsample.1."):
        rest = "shortcut.norm." + rest[len("downsample.1."):]
    return prefix + rest, None


def map_names(state_dict, variant):
    """Rename a classifier state dict; returns (converted, new -> old name, [(old, why dropped)])."""
    preact = canonical_variant(variant) == "Preact"
    converted, origin, dropped = OrderedDict(), {}, []
    for name, value in state_dict.items():
        new, why = classifier_to_d2_name(name, preact)
        if new is None:
            dropped.append((name, why))
            continue
        if new in converted:
            raise ConversionError(f"both {origin[new]!r} and {name!r} map to {new!r}")
        converted[new] = value
        origin[new] = name
    return converted, origin, dropped


# ----------------------------------------------------------------------------- target


def target_cfg(config_file=None, opts=(), **description):
    """The Detectron2 config the weights are meant for.

    Either a yaml (merged into ``get_cfg()`` + ``add_rgsnet_config``) or a description
    passed to :func:`rgs_detectron.classification.rgsnet_cfg` (variant, depth, width, ...);
    ``opts`` (KEY VALUE ...) override either, as in Detectron2's tools.
    """
    if config_file:
        if description:
            raise ConversionError(
                "give either a config file or the model description "
                f"({', '.join(sorted(description))}), not both; use KEY VALUE overrides instead"
            )
        cfg = add_rgsnet_config(get_cfg())
        try:
            cfg.merge_from_file(config_file)
        except (OSError, KeyError, ValueError, AssertionError) as e:
            raise ConversionError(f"cannot read config {config_file!r}: {e}") from None
    else:
        cfg = rgsnet_cfg(**description)
        # A description means "trained torchvision-style": record that in the config too.
        cfg.merge_from_list([x for kv in PYTORCH_INPUT_SETTINGS.items() for x in (kv[0], kv[1])])
    if opts:
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, ValueError, AssertionError) as e:
            raise ConversionError(f"bad config override {list(opts)}: {e}") from None
    return cfg


def expected_shapes(cfg):
    """Names and shapes of the whole RGSNet backbone (res2..res5) as FrozenBN would load it.

    Torchvision-style weights put the stride in the 3x3 conv, which decides where d-RGS and
    Res-RGS have an ``inner_norm``, so the layout is taken with ``STRIDE_IN_1X1: False``
    whatever the config says (a contradicting config is reported). Built on the meta
    device: no memory and no initialization, only the names and shapes.
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    with torch.device("meta"):
        backbone = build_rgsnet_backbone(cfg, ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN)))
    return OrderedDict((k, tuple(v.shape)) for k, v in backbone.state_dict().items())


# ----------------------------------------------------------------------------- reporting


def _short_list(names, limit=_LIST_LIMIT):
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _group_blocks(names, universe):
    """Shorten a name list: ``resN.i.*`` for a whole block of ``universe``, ``module.{a,b}`` else."""
    names = sorted(names)
    by_block = {}
    for n in universe:
        m = re.match(r"^(res\d\.\d+)\.", n)
        if m:
            by_block.setdefault(m.group(1), set()).add(n)
    listed, out = set(names), []
    for block, members in sorted(by_block.items()):
        if members <= listed:
            out.append(f"{block}.* (whole block)")
            listed -= members
    by_module = OrderedDict()
    for n in sorted(listed):
        module, _, leaf = n.rpartition(".")
        by_module.setdefault(module, []).append(leaf)
    for module, leaves in by_module.items():
        if not module:
            out += leaves
        elif len(leaves) == 1:
            out.append(f"{module}.{leaves[0]}")
        else:
            out.append(f"{module}.{{{','.join(leaves)}}}")
    return out


def _stage_layout(names, pattern):
    counts = [0, 0, 0, 0]
    for n in names:
        m = re.match(pattern, n)
        if m:
            s = int(m.group(1)) - 2
            if 0 <= s < 4:
                counts[s] = max(counts[s], int(m.group(2)) + 1)
    return counts


@dataclass
class ConversionResult:
    """What was converted and what the fine-tuning config must say."""

    output: str
    tensors: "OrderedDict[str, torch.Tensor]"
    dropped: List[Tuple[str, str]] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)  # only with allow_partial
    missing: List[str] = field(default_factory=list)  # only with allow_partial
    settings: "OrderedDict[str, object]" = field(default_factory=OrderedDict)
    notes: List[str] = field(default_factory=list)

    def summary(self):
        """Human-readable lines: dropped tensors, partial-load gaps, notes."""
        lines = [f"Wrote {len(self.tensors)} tensors to {self.output}"]
        groups: Dict[str, List[str]] = OrderedDict()
        for name, why in self.dropped:
            groups.setdefault(why, []).append(name)
        for why, names in groups.items():
            what = _short_list(names, 6) if len(names) <= 6 else f"{len(names)} tensors ({_short_list(names, 3)})"
            lines.append(f"Dropped {what}: {why}")
        if self.skipped:
            lines.append(f"Skipped (--allow-partial), not in the target or mis-shaped: {_short_list(self.skipped)}")
        if self.missing:
            lines.append("Not in the checkpoint (--allow-partial), left at their initialization: "
                         + _short_list(_group_blocks(self.missing, [])))
        lines += [f"Note: {n}" for n in self.notes]
        return lines


def _yaml_value(v):
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in v) + "]"
    if isinstance(v, str) and (not v or any(c in v for c in ":#[]{} ")):
        return '"' + v + '"'
    return str(v)


def settings_yaml(settings):
    """Dotted keys -> a nested yaml snippet (keys under one node kept together)."""
    tree = OrderedDict()
    for key, value in settings.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, OrderedDict())
        node[leaf] = value

    def emit(node, depth):
        for k, v in node.items():
            if isinstance(v, OrderedDict):
                yield "  " * depth + k + ":"
                yield from emit(v, depth + 1)
            else:
                yield "  " * depth + f"{k}: {_yaml_value(v)}"

    return "\n".join(emit(tree, 0))


def settings_opts(settings):
    """The same settings as Detectron2 command-line overrides (KEY VALUE ...)."""
    out = []
    for key, value in settings.items():
        v = _yaml_value(value)
        out += [key, f'"{v}"' if any(c in v for c in " []") else v]
    return " ".join(out)


def required_settings(cfg, weights=None):
    """Config keys a fine-tuning config needs for these weights (input and architecture)."""
    default = add_rgsnet_config(get_cfg())
    out = OrderedDict()
    if weights:
        out["MODEL.WEIGHTS"] = weights
    out.update(PYTORCH_INPUT_SETTINGS)
    out["MODEL.RESNETS.DEPTH"] = cfg.MODEL.RESNETS.DEPTH
    for key in ("STEM_OUT_CHANNELS", "RES2_OUT_CHANNELS", "NUM_GROUPS", "WIDTH_PER_GROUP"):
        if cfg.MODEL.RESNETS[key] != default.MODEL.RESNETS[key]:
            out[f"MODEL.RESNETS.{key}"] = cfg.MODEL.RESNETS[key]
    out["MODEL.RGSNET.VARIANT"] = canonical_variant(cfg.MODEL.RGSNET.VARIANT)
    for key in ("GN_GROUPS", "BLOCKS_PER_STAGE", "SE_REDUCTION"):
        if cfg.MODEL.RGSNET[key] != default.MODEL.RGSNET[key]:
            value = cfg.MODEL.RGSNET[key]
            out[f"MODEL.RGSNET.{key}"] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def _config_conflicts(cfg):
    """Settings in a user's config that contradict what the weights need."""
    notes = []
    for key, want in PYTORCH_INPUT_SETTINGS.items():
        node = cfg
        for part in key.split("."):
            node = node[part]
        have = list(node) if isinstance(node, (list, tuple)) else node
        same = (
            all(abs(a - b) < 1e-3 for a, b in zip(have, want)) and len(have) == len(want)
            if isinstance(want, list) else have == want
        )
        if not same:
            notes.append(f"the config sets {key} = {have!r}; these weights need {_yaml_value(want)}")
    if cfg.MODEL.RESNETS.NORM not in ("FrozenBN", "BN", "SyncBN", "nnSyncBN", "naiveSyncBN"):
        notes.append(
            f"the config sets MODEL.RESNETS.NORM = {cfg.MODEL.RESNETS.NORM!r}; the weights hold BatchNorm "
            "statistics, which only a BN-type norm (FrozenBN, the default for fine-tuning) uses"
        )
    return notes


# ----------------------------------------------------------------------------- writing


def save_d2_checkpoint(tensors, path, overwrite=False):
    """Write ``{"model", "__author__", "matching_heuristics"}`` atomically.

    ``.pkl`` -> a pickle of numpy arrays (Detectron2 reads it with ``pickle``); anything
    else -> ``torch.save`` of tensors (read with ``torch.load(weights_only=True)``). The data
    go to a temporary file in the same directory, then ``os.replace`` puts it in place.
    """
    as_pickle = path.endswith(".pkl")
    model = OrderedDict()
    for k, v in tensors.items():
        v = v.detach().cpu().contiguous()
        if as_pickle:
            v = (v.float() if v.dtype == torch.bfloat16 else v).numpy()
        model[k] = v
    payload = {"model": model, "__author__": "rgs_detectron", "matching_heuristics": True}

    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)

    def write(f):
        if as_pickle:
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            torch.save(payload, f)
        if not overwrite and os.path.exists(path):
            raise ConversionError(f"output {path!r} appeared while converting; not overwritten")

    atomic_write(path, write)
    return path


# ----------------------------------------------------------------------------- driver


def _mismatch_message(input_path, variant, converted, expected, unknown, missing, misshaped, source, label):
    """Every problem at once, with the likely cause (wrong depth, variant, naming)."""
    problems = []
    if unknown:
        problems.append(
            f"unknown (checkpoint tensors with no place in the {variant} backbone; e.g. {label(unknown[0])}): "
            + _short_list(_group_blocks([source(n) for n in unknown], []))
        )
    if missing:
        problems.append("missing (the backbone needs them): " + _short_list(_group_blocks(missing, expected)))
    if misshaped:
        problems.append("mis-shaped: " + _short_list(
            f"{label(n)} is {tuple(converted[n].shape)}, expected {expected[n]}" for n in misshaped))

    def extras(names):
        parts = (n.split(".") for n in names)
        return "/".join(sorted({p[2] for p in parts if len(p) > 3 and p[2] in _EXTRAS}))

    hints = []
    have = _stage_layout(converted, r"^res(\d)\.(\d+)\.")
    want = _stage_layout(expected, r"^res(\d)\.(\d+)\.")
    if any(have) and have != want:
        hints.append(f"the checkpoint has {have} blocks per stage, the target {want} (check --depth)")
    if sum(source(n).startswith(("stem.", "res")) for n in converted) > len(converted) // 2:
        hints.append("the names already look like Detectron2's; is this file converted already?")
    if extras(unknown):
        hints.append(f"the checkpoint has {extras(unknown)} layers that {variant} lacks (check --variant)")
    if extras(missing):
        hints.append(f"{variant} needs {extras(missing)} layers that the checkpoint lacks (check --variant)")
    hints.append("check --variant/--depth/--width (or the config file) against how the checkpoint was "
                 "trained, use --rename for other naming schemes, or --allow-partial to keep what matches")
    return (
        f"{input_path!r} does not fit the target backbone; nothing was written.\n  "
        + "\n  ".join(problems) + "\n  hint: " + "\n  hint: ".join(hints)
    )


def convert_checkpoint(input_path, output_path, cfg, renames=(), allow_partial=False, overwrite=False):
    """Convert ``input_path`` for the backbone described by ``cfg`` and write ``output_path``.

    Raises :class:`ConversionError` (nothing written) on unreadable input, unknown,
    missing or mis-shaped tensors (unless ``allow_partial``), or an existing output
    (unless ``overwrite``).
    """
    if os.path.exists(output_path) and not overwrite:
        raise ConversionError(f"output {output_path!r} exists; pass --overwrite to replace it")
    if os.path.exists(output_path) and os.path.samefile(output_path, input_path):
        raise ConversionError("the output would replace the input checkpoint; choose another name")
    variant = canonical_variant(cfg.MODEL.RGSNET.VARIANT)
    expected = expected_shapes(cfg)  # validates the description before the (large) read

    state = load_state_dict(input_path)
    state, renamed_from, dropped_by_rules = apply_renames(state, renames)
    converted, origin, dropped = map_names(state, variant)
    dropped = dropped_by_rules + [(renamed_from[n], why) for n, why in dropped]

    def source(name):  # the name as the input file spells it
        return renamed_from.get(origin[name], origin[name])

    def label(name):
        return name if source(name) == name else f"{source(name)} (-> {name})"

    unknown = [n for n in converted if n not in expected]
    misshaped = [n for n in converted if n in expected and tuple(converted[n].shape) != expected[n]]
    missing = [n for n in expected if n not in converted]

    if (unknown or misshaped or missing) and not allow_partial:
        raise ConversionError(
            _mismatch_message(input_path, variant, converted, expected, unknown, missing, misshaped, source, label)
        )

    keep = OrderedDict((n, converted[n]) for n in expected if n in converted and n not in misshaped)
    if not keep:
        raise ConversionError(f"no tensor of {input_path!r} matches the target backbone; nothing was written")
    notes = []
    twin = _SAME_TENSORS.get(variant)
    if twin:
        notes.append(f"{variant} and {twin} have exactly the same tensors, so the names cannot tell them "
                     f"apart: fine-tune with the variant the checkpoint was trained as")
    written = save_d2_checkpoint(keep, output_path, overwrite=overwrite)
    logger.info("Wrote %d tensors for %s to %s", len(keep), variant, written)
    return ConversionResult(
        output=written,
        tensors=keep,
        dropped=dropped,
        skipped=[label(n) for n in unknown + misshaped],
        missing=list(missing),
        settings=required_settings(cfg, weights=output_path),
        notes=notes + _config_conflicts(cfg),
    )
