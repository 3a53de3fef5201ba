"""``RGSNetSpec``: the one resolved, validated description of an RGSNet.

Everything that builds or reads an RGSNet takes a spec: the Detectron2 backbone and C4
head, the ImageNet classifier, the checkpoint converter, the benchmark and the tables.
A spec is made from a Detectron2 config (:meth:`RGSNetSpec.from_cfg`) or from keyword
arguments (:meth:`RGSNetSpec.create`, also what LazyConfig calls), and validated in
exactly one place, ``__post_init__``: an invalid value fails there, naming the field,
its config key, the value and the valid choices.

Decisions where the paper is silent (docs/ARCHITECTURE.md lists them all):

* Depths are counted as ResNet counts them, ``3 x blocks + 2`` (``2 x blocks + 2`` for the
  basic blocks of depths 18 and 34); depths map to blocks per stage through
  :data:`BLOCKS_PER_DEPTH` (depth 44, whose layout the paper does not give, is ``[3, 4, 4, 3]``).
* ``gn_groups=0`` means the paper's rule (Sec. 3): ``32 x res2_out_channels / 256`` groups, 32 at
  width 1x (res2 output 256), scaled with the width (8 at 0.25x, as the paper states; 64 at 2x, our
  extrapolation; 8 for basic blocks at 1x, whose res2 output is 64). Only variants that have
  a GroupNorm need a valid count.
"""
import dataclasses
import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Tuple

from ..errors import ConfigError, shown
from .shortcuts import SHORTCUT_IMPLS
from .variants import RG_INITS, VARIANTS, Variant, get_variant

__all__ = ["RGSNetSpec", "BLOCKS_PER_DEPTH", "SHORTCUT_IMPLS", "STEMS", "RG_INITS", "BATCH_NORMS", "stage_channels"]

# Blocks per stage (res2..res5) for each depth: the paper's Table 8 for 26-152 (44 and 200 are our choice:
# [3, 4, 4, 3] and He et al.'s ResNet-200), made of bottlenecks, and 18 and 34, made of basic blocks
# (two 3x3 convs) as torchvision's resnet18/34 and Detectron2's R18/R34.
BLOCKS_PER_DEPTH = {
    18: (2, 2, 2, 2),
    26: (2, 2, 2, 2),
    32: (2, 3, 3, 2),
    34: (3, 4, 6, 3),
    38: (3, 3, 3, 3),
    44: (3, 4, 4, 3),
    50: (3, 4, 6, 3),
    62: (3, 4, 10, 3),
    77: (3, 4, 15, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}
BASIC_DEPTHS = (18, 34)
BLOCKS = ("bottleneck", "basic")
# "imagenet": conv7x7/2 + BN + ReLU + max-pool/2 (ResNet's, the only one detection uses).
# "small": conv3x3/1 + BN + ReLU, no pool, for 28-32 pixel images as CIFAR ResNets use.
STEMS = ("imagenet", "small")
# Detectron2's norm names (get_norm); the BatchNorm kinds are those ImageNet statistics and RBS's shortcut need.
BATCH_NORMS = ("BN", "SyncBN", "FrozenBN", "nnSyncBN", "naiveSyncBN")
NORMS = BATCH_NORMS + ("GN", "LN", "")

# Field -> the Detectron2 config key it comes from: what from_cfg reads, and what errors name.
# blocks_per_stage: an empty list means "from MODEL.RESNETS.DEPTH".
CFG_KEYS = {
    "variant": "MODEL.RGSNET.VARIANT",
    "blocks_per_stage": "MODEL.RGSNET.BLOCKS_PER_STAGE",
    "stem_channels": "MODEL.RESNETS.STEM_OUT_CHANNELS",
    "res2_out_channels": "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "num_groups": "MODEL.RESNETS.NUM_GROUPS",
    "width_per_group": "MODEL.RESNETS.WIDTH_PER_GROUP",
    "gn_groups": "MODEL.RGSNET.GN_GROUPS",
    "se_reduction": "MODEL.RGSNET.SE_REDUCTION",
    "shortcut_impl": "MODEL.RGSNET.SHORTCUT_IMPL",
    "stride_in_1x1": "MODEL.RESNETS.STRIDE_IN_1X1",
    "norm": "MODEL.RESNETS.NORM",
    "res5_dilation": "MODEL.RESNETS.RES5_DILATION",
    "rg_init": "MODEL.RGSNET.RG_INIT",
}


def _invalid(field, value, expected):
    key = CFG_KEYS.get(field)
    return ConfigError(f"{f'{field} ({key})' if key else field} = {shown(value)} is invalid: {expected}")


def _check_int(field, value, minimum=1, expected="give a positive integer", whole=None):
    """``value`` is an int (not a bool) >= ``minimum``; the error shows ``whole`` (the whole list) if given."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _invalid(field, value if whole is None else whole, expected)


def _check_choice(field, value, choices):
    # type() too: True == 1, so a bool must not pass for the int 1, nor 1 for True.
    if not any(type(value) is type(c) and value == c for c in choices):
        raise _invalid(field, value, "choose one of " + ", ".join(repr(c) if c == "" else str(c) for c in choices))


def blocks_for_depth(depth, key="MODEL.RESNETS.DEPTH"):
    """Blocks per stage for one of the paper's depths, or a ConfigError listing them."""
    if depth not in BLOCKS_PER_DEPTH:
        raise ConfigError(f"{key} = {depth!r} is invalid: RGSNet depths are {', '.join(map(str, BLOCKS_PER_DEPTH))} "
                          f"({' and '.join(map(str, BASIC_DEPTHS))} of basic blocks); "
                          "for another layout give 4 block counts (MODEL.RGSNET.BLOCKS_PER_STAGE / blocks_per_stage)")
    return BLOCKS_PER_DEPTH[depth]


def block_for_depth(depth):
    """The block a depth is made of: "basic" (two 3x3 convs) for 18 and 34, else "bottleneck"."""
    return "basic" if depth in BASIC_DEPTHS else "bottleneck"


def _scaled(base, width_mult, field):
    value = base * width_mult
    if value < 1 or abs(value - round(value)) > 1e-9:
        raise ConfigError(
            f"width_mult = {width_mult} gives {value:g} for {field} (from {base}); give {field} explicitly")
    return int(round(value))


@dataclass(frozen=True)
class RGSNetSpec:
    """An RGSNet's architecture, resolved and validated (see the module docstring).

    ``blocks_per_stage`` are the blocks in res2..res5, bottlenecks or basic blocks
    (``block``); bottleneck widths are ``num_groups * width_per_group * 2**i`` and stage
    outputs ``res2_out_channels * 2**i`` for stage ``i`` = 0..3, as in Detectron2's ResNet.
    """

    variant: Variant = VARIANTS["Res-RGS"]  # a name (any case) is accepted and replaced by its row
    blocks_per_stage: Tuple[int, int, int, int] = BLOCKS_PER_DEPTH[50]
    stem_channels: int = 64
    res2_out_channels: int = 256
    num_groups: int = 1
    width_per_group: int = 64
    gn_groups: int = 0
    se_reduction: int = 0
    shortcut_impl: str = "auto"
    stride_in_1x1: bool = False
    norm: str = "BN"
    res5_dilation: int = 1
    stem: str = "imagenet"
    in_channels: int = 3
    rg_init: str = "paper"
    block: str = "bottleneck"  # "basic" for depths 18 and 34 (MODEL.RESNETS.DEPTH decides in a config)

    # ------------------------------------------------------------------ validation

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        set_("variant", get_variant(self.variant, key=f"variant ({CFG_KEYS['variant']})"))
        blocks = self.blocks_per_stage
        four = "give 4 positive integers (blocks in res2..res5)"
        if not isinstance(blocks, (list, tuple)) or len(blocks) != 4:
            raise _invalid("blocks_per_stage", blocks, four)
        for n in blocks:
            _check_int("blocks_per_stage", n, 1, four, whole=blocks)
        set_("blocks_per_stage", tuple(blocks))
        for name in ("stem_channels", "res2_out_channels", "num_groups", "width_per_group", "in_channels"):
            _check_int(name, getattr(self, name))
        _check_int("se_reduction", self.se_reduction, 0, "give 0 (no SE) or a positive reduction such as 16")
        set_("shortcut_impl", str(self.shortcut_impl).lower())
        for name, choices in (("shortcut_impl", SHORTCUT_IMPLS), ("stride_in_1x1", (True, False)),
                              ("res5_dilation", (1, 2)), ("stem", STEMS), ("rg_init", RG_INITS), ("block", BLOCKS)):
            _check_choice(name, getattr(self, name), choices)
        if self.block == "basic":
            self._check_basic()
        if not callable(self.norm):
            _check_choice("norm", self.norm, NORMS)
        if self.rg_init not in self.variant.rg_inits():
            raise _invalid(
                "rg_init", self.rg_init, f"'zero' is for variants that keep the identity beside the RG "
                f"shortcut (Res-RGS); {self.variant} would start with no shortcut at all")
        set_("gn_groups", self._checked_gn_groups())

    def _check_basic(self):
        """What torchvision's resnet18/34 and Detectron2's R18/R34 fix, and a basic block cannot vary."""
        why = "basic blocks (MODEL.RESNETS.DEPTH 18 or 34)"
        for field, want, reason in (
            ("res2_out_channels", self.stem_channels, f"{why} keep the stem's width in res2 (stem_channels)"),
            ("num_groups", 1, f"{why} have no grouped conv"),
            ("width_per_group", 64, f"{why} have no bottleneck width (res2_out_channels sets the widths)"),
            ("stride_in_1x1", False, f"{why} have no 1x1 conv to put the stride in"),
            ("res5_dilation", 1, f"{why} are not dilated"),
        ):
            if getattr(self, field) != want:
                raise _invalid(field, getattr(self, field), f"{reason}: set it to {want}")

    def _checked_gn_groups(self):
        groups = self.gn_groups
        _check_int("gn_groups", groups, 0, "give a positive group count, or 0 for the paper's rule")
        if not self.variant.uses_group_norm:
            return 0  # unused: this variant has no GroupNorm (so records of it compare equal)
        if groups == 0:
            scaled, rest = divmod(32 * self.res2_out_channels, 256)
            if scaled < 1 or rest:
                raise _invalid(
                    "gn_groups",
                    0,
                    f"the paper's rule (32 x res2_out_channels / 256) gives no whole count for "
                    f"res2_out_channels={self.res2_out_channels}; give the group count explicitly",
                )
            groups = scaled
        for i, (inner, out) in enumerate(self.stage_widths()):
            sites = {"out": ("output", out), "inner": ("inner width", inner)}
            for site in self.variant.group_norm_sites():
                what, channels = sites[site]
                if channels % groups:
                    valid = [g for g in range(1, channels + 1) if channels % g == 0]
                    raise _invalid(
                        "gn_groups",
                        groups,
                        f"{self.variant} has GroupNorms on res{i + 2}'s {what} ({channels} channels), "
                        f"which {groups} groups do not divide; valid counts there: {valid}",
                    )
        return groups

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(cls, variant="Res-RGS", depth=50, width_mult=1.0, *, blocks_per_stage=None, stem_channels=None,
               res2_out_channels=None, width_per_group=None, **fields):
        """A spec from keyword arguments, as the paper describes models.

        ``depth`` picks blocks per stage from :data:`BLOCKS_PER_DEPTH` unless
        ``blocks_per_stage`` is given, and basic blocks for depths 18 and 34 unless ``block``
        is. ``width_mult`` (the paper's 0.25x/0.5x/1x/2x) scales the stem (64), res2 output
        (256; 64 with basic blocks) and bottleneck per group (64; basic blocks have no bottleneck and
        keep 64) channels; an explicit
        ``stem_channels``/``res2_out_channels``/``width_per_group`` wins. Other keywords are
        fields of the spec.
        """
        unknown = set(fields) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown RGSNet spec argument(s) {sorted(unknown)}; "
                              f"known: depth, width_mult, {', '.join(f.name for f in dataclasses.fields(cls))}")
        fields.setdefault("block", block_for_depth(depth))
        return cls(
            variant=variant,
            blocks_per_stage=blocks_per_stage if blocks_per_stage is not None else blocks_for_depth(depth, "depth"),
            stem_channels=stem_channels or _scaled(64, width_mult, "stem_channels"),
            res2_out_channels=res2_out_channels or
            _scaled(64 if fields["block"] == "basic" else 256, width_mult, "res2_out_channels"),
            width_per_group=width_per_group or
            (64 if fields["block"] == "basic" else _scaled(64, width_mult, "width_per_group")),
            **fields,
        )

    @classmethod
    def from_cfg(cls, cfg, in_channels=None):
        """The spec a Detectron2 config describes (``MODEL.RESNETS`` + ``MODEL.RGSNET``)."""
        if "RGSNET" not in cfg.MODEL:
            raise ConfigError("this config has no MODEL.RGSNET node: call rgs_detectron.add_rgsnet_config(cfg) before "
                              "merging an RGSNet config (rgs_detectron.model_zoo.get_config does both)")
        res = cfg.MODEL.RESNETS
        if any(res.DEFORM_ON_PER_STAGE):
            raise ConfigError(
                f"MODEL.RESNETS.DEFORM_ON_PER_STAGE = {list(res.DEFORM_ON_PER_STAGE)!r} is invalid: RGSNet "
                "blocks have no deformable variant; set it to [False, False, False, False]")
        values = {field: functools.reduce(getattr, key.split("."), cfg) for field, key in CFG_KEYS.items()}
        values["blocks_per_stage"] = list(values["blocks_per_stage"]) or blocks_for_depth(res.DEPTH)
        return cls(**values, in_channels=in_channels or len(cfg.MODEL.PIXEL_MEAN), block=block_for_depth(res.DEPTH))

    @classmethod
    def resolve(cls, spec, description, who):
        """``spec``, or one made from its ``description`` keywords; both at once is an error naming ``who``."""
        if spec is None:
            return cls.create(**description)
        if description:
            raise ConfigError(f"give {who} either spec= or its description {sorted(description)}, not both")
        return spec

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """Plain values (the variant by name), as classifier checkpoints record a spec (``spec_record.read_record``
        reads it back)."""
        return {**dataclasses.asdict(self), "variant": str(self.variant)}

    # ------------------------------------------------------------------ derived

    @property
    def depth(self):
        """ResNet's count: three convs per bottleneck (two per basic block), plus the stem conv and the classifier."""
        return (2 if self.block == "basic" else 3) * sum(self.blocks_per_stage) + 2

    def stage_widths(self):
        """``(inner, out_channels)`` of res2..res5: the residual branch's inner width (a
        bottleneck's; a basic block's is its output) and the stage's output."""
        outs = [self.res2_out_channels * 2**i for i in range(4)]
        if self.block == "basic":
            return [(out, out) for out in outs]
        return [(self.num_groups * self.width_per_group * 2**i, out) for i, out in enumerate(outs)]

    def architecture_settings(self):
        """The Detectron2 config keys that weights of this architecture depend on.

        ``MODEL.RESNETS.DEPTH`` when the blocks are one of the table's depths, else
        ``MODEL.RGSNET.BLOCKS_PER_STAGE`` (with ``DEPTH`` 18 for basic blocks, which it
        selects); ``GN_GROUPS`` is 0 (unused) for variants without GroupNorm.
        Feeding these to ``from_cfg`` on Detectron2's defaults gives this spec back (with
        the defaults' norm, shortcut implementation and dilation).
        """
        out = OrderedDict()
        basic = self.block == "basic"
        depth = next(
            (d for d, b in BLOCKS_PER_DEPTH.items() if b == self.blocks_per_stage and (d in BASIC_DEPTHS) == basic),
            None)
        if depth is not None or basic:
            out["MODEL.RESNETS.DEPTH"] = depth or BASIC_DEPTHS[0]
        if depth is None:
            out["MODEL.RGSNET.BLOCKS_PER_STAGE"] = list(self.blocks_per_stage)
        for field in ("stem_channels", "res2_out_channels", "num_groups", "width_per_group", "stride_in_1x1", "variant",
                      "gn_groups", "se_reduction"):
            out[CFG_KEYS[field]] = str(self.variant) if field == "variant" else getattr(self, field)
        return out


def stage_channels(spec: RGSNetSpec, stage: str) -> int:
    """Output channels of ``stage`` ("stem", "res2".."res5") of ``spec``.

    For LazyConfigs whose heads must know the backbone's width:
    ``in_channels=L(stage_channels)(spec="${rgsnet}", stage="res4")``.
    """
    if stage == "stem":
        return spec.stem_channels
    index = {"res2": 0, "res3": 1, "res4": 2, "res5": 3}.get(stage)
    if index is None:
        raise ConfigError(f"stage = {stage!r} is invalid: choose stem, res2, res3, res4 or res5")
    return spec.stage_widths()[index][1]
