"""What a conversion tells the user: the mismatch message, the summary, the settings to use.

Kept apart from the conversion itself (``convert.py``): this is wording and formatting,
the other is what happens to tensors.
"""
import functools
import re
import shlex
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import yaml

from ..classification.datasets import IMAGENET_MEAN, IMAGENET_STD
from ..modeling.spec import BATCH_NORMS, RGSNetSpec
from ..modeling.variants import all_added_layers
from ..utils.names import group_blocks, short_list

__all__ = [
    "ConversionResult", "required_settings", "config_conflicts", "settings_yaml", "settings_opts", "mismatch_message"
]

# What torchvision-style training implies: RGB input in 0..255 normalized with the ImageNet statistics the
# classifier was trained with (``classification/datasets.py``, in 0..1 units: the one place they are written;
# the shipped configs repeat them, tests/test_configs.py holds them equal), stride in the 3x3 conv.
PYTORCH_INPUT_SETTINGS = {
    "INPUT.FORMAT": "RGB",
    "MODEL.PIXEL_MEAN": [round(255 * v, 3) for v in IMAGENET_MEAN],
    "MODEL.PIXEL_STD": [round(255 * v, 3) for v in IMAGENET_STD],
    "MODEL.RESNETS.STRIDE_IN_1X1": False,
}


def _stage_layout(names):
    """Blocks per stage res2..res5 that ``names`` hold."""
    counts = [0, 0, 0, 0]
    for m in filter(None, (re.match(r"^res([2-5])\.(\d+)\.", n) for n in names)):
        s = int(m.group(1)) - 2
        counts[s] = max(counts[s], int(m.group(2)) + 1)
    return counts


@dataclass
class ConversionResult:
    """What was converted and what the fine-tuning config must say."""

    output: str
    tensors: "OrderedDict[str, object]"
    dropped: List[Tuple[str, str]] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)  # only with allow_partial
    missing: List[str] = field(default_factory=list)  # only with allow_partial
    settings: Dict[str, object] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def summary(self):
        """Human-readable lines: dropped tensors, partial-load gaps, notes."""
        lines = [f"Wrote {len(self.tensors)} tensors to {self.output}"]
        groups: Dict[str, List[str]] = OrderedDict()
        for name, why in self.dropped:
            groups.setdefault(why, []).append(name)
        for why, names in groups.items():
            what = short_list(names, 6) if len(names) <= 6 else f"{len(names)} tensors ({short_list(names, 3)})"
            lines.append(f"Dropped {what}: {why}")
        if self.skipped:
            lines.append(f"Skipped (--allow-partial), not in the target or mis-shaped: {short_list(self.skipped)}")
        if self.missing:
            lines.append("Not in the checkpoint (--allow-partial), left at their initialization: " +
                         short_list(group_blocks(self.missing, [])))
        lines += [f"Note: {n}" for n in self.notes]
        return lines


def required_settings(spec: RGSNetSpec, weights):
    """Config keys a fine-tuning config needs for the weights file ``weights`` (input and architecture).

    Depth and variant always; other architecture keys only where they differ from the
    defaults of ``get_rgsnet_cfg()``.
    """
    defaults = RGSNetSpec.create(spec.variant).architecture_settings()
    out = {"MODEL.WEIGHTS": weights, **PYTORCH_INPUT_SETTINGS}
    # The weights fix the stride placement (torchvision: in the 3x3 conv), whatever the config said.
    for key, value in spec.replace(stride_in_1x1=False).architecture_settings().items():
        always = key in ("MODEL.RESNETS.DEPTH", "MODEL.RGSNET.BLOCKS_PER_STAGE", "MODEL.RGSNET.VARIANT")
        if key not in out and (always or defaults.get(key) != value):
            out[key] = value
    return out


def config_conflicts(cfg):
    """Settings in a user's config that contradict what torchvision-style weights need."""
    notes = []
    for key, want in PYTORCH_INPUT_SETTINGS.items():
        have = functools.reduce(getattr, key.split("."), cfg)
        have = list(have) if isinstance(want, list) else have
        close = isinstance(want, list) and len(have) == len(want) and all(abs(a - b) < 1e-3 for a, b in zip(have, want))
        if not (close or have == want):
            notes.append(f"the config sets {key} = {have!r}; these weights need {want!r}")
    if cfg.MODEL.RESNETS.NORM not in BATCH_NORMS:
        notes.append(f"the config sets MODEL.RESNETS.NORM = {cfg.MODEL.RESNETS.NORM!r}; the weights hold BatchNorm "
                     "statistics, which only a BN-type norm (FrozenBN, the default for fine-tuning) uses")
    return notes


class _FlowListDumper(yaml.SafeDumper):
    """Block mappings (one key a line, as Detectron2's configs) with lists on one line."""


_FlowListDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


def settings_yaml(settings):
    """Dotted keys -> a nested yaml snippet, in the given order."""
    tree = {}
    for key, value in settings.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return yaml.dump(tree, Dumper=_FlowListDumper, sort_keys=False, default_flow_style=False).rstrip()


def settings_opts(settings):
    """The same settings as Detectron2 command-line overrides (KEY VALUE ...), shell-quoted: ``str`` writes
    numbers, booleans and lists as ``merge_from_list`` reads them back (``ast.literal_eval``, else a string)."""
    return " ".join(f"{key} {shlex.quote(str(value))}" for key, value in settings.items())


def mismatch_message(input_path, variant, converted, expected, unknown, missing, misshaped, origin, label):
    """Every problem at once, with the likely cause (wrong depth, variant, naming). ``origin`` maps a
    converted name to the input's, ``label`` shows both."""
    problems = []
    if unknown:
        problems.append(
            f"unknown (checkpoint tensors with no place in the {variant} backbone; e.g. {label(unknown[0])}): " +
            short_list(group_blocks([origin[n] for n in unknown], [])))
    if missing:
        problems.append("missing (the backbone needs them): " + short_list(group_blocks(missing, expected)))
    if misshaped:
        problems.append("mis-shaped: " + short_list(
            f"{label(n)} is {tuple(converted[n].shape)}, expected {expected[n]}" for n in misshaped))

    extra_names = all_added_layers()

    def extras(names):
        parts = (n.split(".") for n in names)
        return "/".join(sorted({p[2] for p in parts if len(p) > 3 and p[2] in extra_names}))

    hints = []
    have, want = _stage_layout(converted), _stage_layout(expected)
    if any(have) and have != want:
        hints.append(f"the checkpoint has {have} blocks per stage, the target {want} (check --depth)")
    if sum(origin[n].startswith(("stem.", "res")) for n in converted) > len(converted) // 2:
        hints.append("the names already look like Detectron2's; is this file converted already?")
    if extras(unknown):
        hints.append(f"the checkpoint has {extras(unknown)} layers that {variant} lacks (check --variant)")
    if extras(missing):
        hints.append(f"{variant} needs {extras(missing)} layers that the checkpoint lacks (check --variant)")
    hints.append("check --variant/--depth/--width-mult (or the config file) against how the checkpoint was "
                 "trained, use --rename for other naming schemes, or --allow-partial to keep what matches")
    return (f"{input_path!r} does not fit the target backbone; nothing was written.\n  " + "\n  ".join(problems) +
            "\n  hint: " + "\n  hint: ".join(hints))
