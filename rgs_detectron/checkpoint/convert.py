"""Convert ImageNet classification checkpoints (RGSNet or torchvision ResNet) to Detectron2.

The input is a torchvision-style state dict (``RGSNetClassifier``'s layout); the output is
the dict Detectron2's ``DetectionCheckpointer`` reads::

    {"model": {name: tensor}, "__author__": "rgs_detectron", "matching_heuristics": True}

Names in ``model`` are those of the bottom-up backbone (``stem.conv1.weight``,
``res2.0.conv1.norm.running_mean``, ...), like every ImageNet checkpoint Detectron2 ships.
``matching_heuristics`` is True so the checkpointer finds them wherever the backbone sits
in the detector: ``backbone.bottom_up.*`` (FPN), ``backbone.*`` plus ``roi_heads.res5.*``
(C4). With False it would require the full detector's names and load nothing.

Safety and validation, in order: the input is read with ``torch.load(weights_only=True)``
only (a pickle that would run code is refused, never executed); names go through an
explicit map (after optional ``--rename`` rules); every tensor is checked by name and
shape against the target backbone built from the same ``RGSNetSpec`` the user fine-tunes
with; the output is written atomically, so a failure never leaves a file behind.

The output is a ``.pth`` read with ``torch.load(weights_only=True)``; ``.pkl`` is refused:
Detectron2 unpickles ``.pkl`` weights with plain ``pickle``, which can run code, so this
project never writes them (its checkpointer reads them only through a restricted loader).
"""
import logging
import os
import re
from collections import OrderedDict

import torch

from ..classification.classifier import RGSNetClassifier
from ..classification.warm_start import LABEL, warm_start_from_resnet
from ..errors import ConfigError, WeightsError
from ..modeling.backbone import RGSNet
from ..modeling.spec import RGSNetSpec
from ..modeling.spec_record import RECORD_KEY, encode_record, read_record, refuse_other_spec
from ..modeling.variants import twin_of
from ..utils.fileio import atomic_write
from ..utils.torch_files import load_weights_only, state_dict_in, weights_source
from .conversion_report import (
    ConversionResult,
    config_conflicts,
    mismatch_message,
    required_settings,
)

__all__ = ["ConversionError", "apply_renames", "map_names", "expected_shapes", "convert_checkpoint"]

logger = logging.getLogger(__name__)


class ConversionError(WeightsError, ValueError):
    """The checkpoint cannot be converted as asked; nothing was written."""


# ----------------------------------------------------------------------------- renaming


def _rename_all(state_dict, rename, collision):
    """``(renamed dict, new -> old name, [(old name, why dropped)])`` where ``rename(name)`` gives
    ``(new name or None, why dropped)``; two names made one are refused, in ``collision``'s words."""
    out, origin, dropped = OrderedDict(), {}, []
    for name, value in state_dict.items():
        new, why = rename(name)
        if new is None:
            dropped.append((name, why))
        elif new in out:
            raise ConversionError(collision.format(origin[new], name, new))
        else:
            out[new], origin[new] = value, name
    return out, origin, dropped


def parse_rename(text):
    """``"REGEX=REPLACEMENT"`` -> (compiled regex, replacement). Splits at the first ``=``."""
    pattern, sep, repl = text.partition("=")
    if not sep or not pattern:
        raise ConfigError(f"--rename {text!r} must look like REGEX=REPLACEMENT")
    try:
        return re.compile(pattern), repl
    except re.error as e:
        raise ConfigError(f"--rename {text!r}: bad regular expression ({e})") from None


def apply_renames(state_dict, rules):
    """Apply ``re.sub`` rules in order to every name.

    A name that a rule turns into the empty string is dropped (for tensors that belong to
    neither network, e.g. a momentum encoder). Returns (new dict, new -> old name,
    [(old name, why dropped)]).
    """
    rules = [parse_rename(r) for r in rules]

    def rename(name):
        new = name
        for pattern, repl in rules:
            try:
                new = pattern.sub(repl, new)
            except (re.error, IndexError) as e:
                raise ConfigError(f"--rename {pattern.pattern!r}={repl!r} failed on {name!r}: {e}") from None
        return (new, None) if new else (None, "renamed to nothing by --rename")

    return _rename_all(state_dict, rename, "rename rules map both {!r} and {!r} to {!r}")


# ----------------------------------------------------------------------------- name map

_STEM = re.compile(r"^conv1\.weight$|^bn1\.(?P<bn>\w+)$")
_BLOCK = re.compile(r"^layer(?P<stage>[1-4])\.(?P<idx>\d+)\.(?P<rest>.+)$")


def classifier_to_d2_name(name, preact=False):
    """Map one classifier name to its Detectron2 backbone name.

    Returns (new name or None, why dropped). ``conv1``/``bn1`` -> ``stem.conv1[.norm]``;
    ``layerN.i`` -> ``res{N+1}.i``; ``bnK`` -> ``convK.norm`` (Preact: ``normK``, since
    its norms precede the convs); ``downsample.0/1`` -> ``shortcut``/``shortcut.norm``;
    the layers a variant adds keep their names. Unrecognized names pass through
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
    rest = re.sub(r"^bn([1-3])\.", r"norm\1." if preact else r"conv\1.norm.", m.group("rest"))
    rest = re.sub(r"^downsample\.0\.", "shortcut.", re.sub(r"^downsample\.1\.", "shortcut.norm.", rest))
    return f"res{int(m.group('stage')) + 1}.{m.group('idx')}.{rest}", None


def map_names(state_dict, spec: RGSNetSpec):
    """Rename a classifier state dict; returns (converted, new -> old name, [(old, why dropped)])."""
    return _rename_all(state_dict, lambda name: classifier_to_d2_name(name, spec.variant.preact),
                       "both {!r} and {!r} map to {!r}")


# ----------------------------------------------------------------------------- target


def expected_shapes(spec: RGSNetSpec):
    """Names and shapes of the whole backbone (res2..res5) as FrozenBN would load it.

    Torchvision-style weights put the stride in the 3x3 conv, which decides where d-RGS and
    Res-RGS have an ``inner_norm``, so the layout is taken with ``stride_in_1x1=False``
    whatever the spec says (a contradicting config is reported). Built on the meta
    device: no memory and no initialization, only the names and shapes.
    """
    target = spec.replace(norm="FrozenBN", stride_in_1x1=False, stem="imagenet")
    with torch.device("meta"):
        backbone = RGSNet(spec=target, out_features=["res2", "res3", "res4", "res5"])
    return OrderedDict((k, tuple(v.shape)) for k, v in backbone.state_dict().items() if k != RECORD_KEY)


def _refuse_small_stem(state, input_path):
    stem = state.get("conv1.weight")
    if stem is not None and stem.ndim == 4 and tuple(stem.shape[-2:]) != (7, 7):
        raise ConversionError(
            f"{input_path!r} has a {stem.shape[-2]}x{stem.shape[-1]} conv1: it was trained with the small-image "
            "stem (for 28-32 pixel inputs, no max-pool), which Detectron2 backbones do not have. Pretrain with "
            "the ImageNet stem (train_classifier --stem imagenet, the default) to get weights for detection.")


# ----------------------------------------------------------------------------- writing


def _save(tensors, path, spec: RGSNetSpec, overwrite, author):
    """Write ``{"model", "__author__", "matching_heuristics"}`` atomically with ``torch.save``; ``model`` holds
    ``spec``'s record for a backbone (``_extra_state``) and for a C4 head's res5 (``res5._extra_state``), the keys
    that Detectron2's matching heuristics place there (one key would match both parts of a C4 model)."""
    model = OrderedDict((k, v.detach().cpu().contiguous()) for k, v in tensors.items())
    model[RECORD_KEY] = model[f"res5.{RECORD_KEY}"] = encode_record(spec)
    payload = {"model": model, "__author__": author, "matching_heuristics": True}
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)

    def write(f):
        torch.save(payload, f)
        if not overwrite and os.path.exists(path):
            raise ConversionError(f"output {path!r} appeared while converting; not overwritten")

    atomic_write(path, write)
    return path


# ----------------------------------------------------------------------------- driver


def _warm_started(state, spec, source):
    """The state dict of an RGSNetClassifier for ``spec`` warm-started from ResNet ``state``, and the report's lines."""
    fc = state.get("fc.weight")
    torch.manual_seed(0)  # the initial values of new SE layers, if any
    classifier = RGSNetClassifier(spec.replace(norm="BN", stride_in_1x1=False, res5_dilation=1, stem="imagenet"),
                                  num_classes=fc.shape[0] if fc is not None else 1000)
    lines = warm_start_from_resnet(classifier, state, source)
    return classifier.state_dict(), lines


def _target(spec, recorded, source, warm_start):
    """The spec to convert for: the recorded one wins; one given that contradicts it is refused."""
    if spec is None and warm_start:
        raise ConfigError("a warm start needs the target: give --variant (and --depth/--width-mult) or --config-file")
    if spec is None and recorded is None:
        raise ConfigError(f"{source!r} records no architecture (only train_classifier checkpoints do): give "
                          "--variant (and --depth/--width-mult if not 50 / 1x) or --config-file")
    if spec is None:
        return recorded
    if warm_start or recorded is None:  # a warm start's recorded plain ResNet describes its input, not the target
        return spec
    # The converter writes the stride in the 3x3 conv whatever a config says (a conflict is a note).
    refuse_other_spec(recorded.replace(stride_in_1x1=False), spec.replace(stride_in_1x1=False), "the target given",
                      repr(source), "the target")
    return spec


def convert_checkpoint(input_path, output_path, spec: RGSNetSpec = None, *, cfg=None, renames=(), allow_partial=False,
                       overwrite=False, warm_start=False):
    """Convert ``input_path`` for the backbone ``spec`` describes and write ``output_path``.

    ``input_path`` is a weights source (a path, or ``torchvision:ENUM.VALUE``, found in or
    downloaded into torch's cache), read once. ``spec`` may be None when the checkpoint
    records its architecture (``train_classifier``'s do); a given ``spec`` that contradicts
    the record is refused. ``cfg``, when the target came from a config file, is checked for
    settings that contradict torchvision-style weights (reported as notes). ``warm_start``:
    the input is a plain ResNet whose tensors initialise ``spec``'s shared layers, the
    variant's own layers starting at stated values (``warm_start.py``; not the paper's
    protocol, and the output file and report say so). The output records the spec. Raises
    :class:`ConversionError` (nothing written) on unreadable input, unknown, missing or
    mis-shaped tensors (unless ``allow_partial``), or an existing output (unless ``overwrite``).
    """
    if output_path.endswith(".pkl"):
        raise ConfigError(
            f"output {output_path!r}: .pkl weights are unpickled by Detectron2 with plain pickle, which can run "
            "code; write a .pth (read with torch.load(weights_only=True)) instead")
    path, input_path = weights_source(input_path)  # messages name a torchvision source's cached file too
    if os.path.exists(output_path) and not overwrite:
        raise ConversionError(f"output {output_path!r} exists; pass --overwrite to replace it")
    if os.path.exists(output_path) and os.path.exists(path) and os.path.samefile(output_path, path):
        raise ConversionError("the output would replace the input checkpoint; choose another name")

    checkpoint = load_weights_only(path)
    recorded = read_record(
        checkpoint.get("rgsnet_spec") if isinstance(checkpoint, dict) else None, f"{input_path}: rgsnet_spec")
    state = state_dict_in(checkpoint, path)
    _refuse_small_stem(state, input_path)
    notes = [f"architecture recorded in {input_path}: {recorded.variant}-{recorded.depth}"] if spec is None and \
        recorded else []
    spec = _target(spec, recorded, input_path, warm_start)
    expected = expected_shapes(spec)
    state, renamed_from, dropped_by_rules = apply_renames(state, renames)
    author = "rgs_detectron"
    if warm_start:
        state, lines = _warm_started(state, spec, input_path)
        renamed_from = {n: renamed_from.get(n, n) for n in state}
        notes += lines
        author = f"rgs_detectron, {spec.variant} {LABEL}"
    converted, origin, dropped = map_names(state, spec)
    origin = {new: renamed_from[old] for new, old in origin.items()}  # the names as the input file spells them
    dropped = dropped_by_rules + [(renamed_from[n], why) for n, why in dropped]

    def label(name):
        return name if origin[name] == name else f"{origin[name]} (-> {name})"

    unknown = [n for n in converted if n not in expected]
    misshaped = [n for n in converted if n in expected and tuple(converted[n].shape) != expected[n]]
    missing = [n for n in expected if n not in converted]
    if (unknown or misshaped or missing) and not allow_partial:
        raise ConversionError(
            mismatch_message(input_path, spec.variant, converted, expected, unknown, missing, misshaped, origin, label))
    keep = OrderedDict((n, converted[n]) for n in expected if n in converted and n not in misshaped)
    if not keep:
        raise ConversionError(f"no tensor of {input_path!r} matches the target backbone; nothing was written")
    twin = twin_of(spec.variant)
    if twin and recorded is None and not warm_start:  # a warm start's new layers are the variant's by construction
        notes.append(f"{spec.variant} and {twin} have exactly the same tensors, so nothing in the input tells which "
                     f"one it was trained as: the output records {spec.variant}, as the target says; if it was "
                     f"trained as {twin}, convert it again for {twin}")
    if cfg is not None:
        notes += config_conflicts(cfg)
    target = spec.replace(stride_in_1x1=False, stem="imagenet")  # what the tensors are laid out for
    written = _save(keep, output_path, target, overwrite, author)
    logger.info("Wrote %d tensors for %s to %s", len(keep), spec.variant, written)
    return ConversionResult(
        output=written,
        tensors=keep,
        dropped=dropped,
        skipped=[label(n) for n in unknown + misshaped],
        missing=list(missing),
        settings=required_settings(spec, weights=output_path),
        notes=notes,
    )
