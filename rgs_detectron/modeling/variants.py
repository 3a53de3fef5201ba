"""The one table that decides what every RGSNet variant computes.

A bottleneck block computes ``y = h(x) + F(x)`` and outputs ``f(y)`` (the paper's Eq. 1).
The residual branch ``F`` is ResNet's (conv1x1-BN-ReLU, conv3x3-BN-ReLU, conv1x1-BN); a
variant changes only the shortcut ``h``, the post-sum function ``f``, and where extra
norms sit inside ``F``. Each row of :data:`VARIANTS` says exactly that; the Detectron2
blocks, the ImageNet classifier, the checkpoint converter and the docs all read it
(``docs/ARCHITECTURE.md`` shows how to add a row).

Projection blocks (first of a stage, where channels or stride change) keep ResNet's
``BN(conv1x1_stride(x))`` shortcut in every variant and then apply the variant's ``f``:
the nonlinear shortcut replaces the identity only where shapes match.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from ..errors import ConfigError, shown

__all__ = ["Variant", "VARIANTS", "get_variant", "twin_of", "all_added_layers", "markdown_table", "RG_INITS"]

# h(x) on identity-shape blocks: its formula, and the kind of layer it adds (Variant.layers).
# "RG" is the paper's nonlinear shortcut GN(ReLU(x)).
SHORTCUTS = {
    "identity": ("x", None),
    "RG": ("GN(ReLU(x))", "RG"),
    "RB": ("BN(ReLU(x))", "RB"),
    "G": ("GN(x)", "GN"),
}
# f, applied to the sum.
POST_SUM = {"relu": "ReLU(y)", "none": "y", "rg": "GN(ReLU(y))"}
# Initial scale of the RG shortcut's GroupNorm in identity blocks: "paper" (1, as any norm) or
# "zero" (each Res-RGS block starts as F(x) + x; docs/ARCHITECTURE.md, "Activation growth").
RG_INITS = ("paper", "zero")


@dataclass(frozen=True)
class Variant:
    """One block design; :meth:`layers` says which layers it adds. ``str()`` gives its name."""

    name: str
    paper: str  # where the paper defines it
    shortcut: str = "identity"  # key of SHORTCUTS
    keep_identity: bool = False  # also add x beside h(x) (Res-RGS)
    inner_rg: bool = False  # b = BN2(conv3x3(a)) + GN(a), where the 3x3 conv has stride 1
    relu_gn: bool = False  # GN after each ReLU inside F (2GN)
    post: str = "relu"  # key of POST_SUM
    preact: bool = False  # pre-activation block (BN-ReLU-conv x3), no other field applies

    def __post_init__(self):
        assert self.shortcut in SHORTCUTS and self.post in POST_SUM, self
        assert not (self.keep_identity and self.shortcut == "identity"), self

    def __str__(self):
        return self.name

    def __repr__(self):
        return f"Variant({self.name!r})"

    def layers(self, identity_shape=True, inner=True, inner_relus=2) -> Tuple[Tuple[str, str, str], ...]:
        """``(module name, kind, site)`` of each layer the row adds to a block (SE aside).

        The one statement of what a row adds: the blocks build these layers, the spec checks
        their GroupNorm widths, the converter and the docs name them. ``kind``: "RG" (ReLU then
        GroupNorm, one module), "RB" (ReLU then BatchNorm), "GN" (GroupNorm); ``site``: the
        channels it normalizes, the block's "out"put or the residual branch's "inner" width.
        ``identity_shape``: the block keeps its input's shape (projection blocks keep ResNet's
        shortcut); ``inner``: its second conv keeps the shape (where an inner RG shortcut fits);
        ``inner_relus``: the ReLUs inside F (2 in a bottleneck, 1 in a basic block).
        """
        layers = []
        if identity_shape and self.shortcut != "identity":
            layers.append(("shortcut_norm", SHORTCUTS[self.shortcut][1], "out"))
        if self.inner_rg and inner:
            layers.append(("inner_norm", "RG", "inner"))
        if self.relu_gn:
            layers += [(f"relu_norm{i}", "GN", "inner") for i in range(1, inner_relus + 1)]
        if self.post == "rg":
            layers.append(("output_norm", "RG", "out"))
        return tuple(layers)

    @property
    def uses_group_norm(self) -> bool:
        return bool(self.group_norm_sites())

    def group_norm_sites(self) -> Tuple[str, ...]:
        """Which widths a GroupNorm of this variant normalizes ("out", "inner")."""
        return tuple(dict.fromkeys(site for _, kind, site in self.layers() if kind != "RB"))

    def added_layers(self) -> Tuple[str, ...]:
        """Names of the modules this row adds to every identity-shape bottleneck (SE aside)."""
        return tuple(name for name, _, _ in self.layers())

    def rg_inits(self) -> Tuple[str, ...]:
        """The initialisations of ``RG_INITS`` that apply: "zero" needs the identity beside the RG
        shortcut (Res-RGS), or the block would start with no shortcut at all."""
        return RG_INITS if self.shortcut == "RG" and self.keep_identity else RG_INITS[:1]

    def tensor_layout(self):
        """What the variant's added tensors look like; equal layouts cannot be told apart."""
        return tuple((name, "BN" if kind == "RB" else "GN") for name, kind, _ in self.layers()) + (self.preact, )

    def equation(self) -> str:
        """The identity-shape block's output, as in the docs' variant table."""
        if self.preact:
            return "x + F_pre(x), F_pre = (BN-ReLU-conv) x3"
        branch = "F_inner(x)" if self.inner_rg else ("F_2GN(x)" if self.relu_gn else "F(x)")
        terms = [branch, SHORTCUTS[self.shortcut][0]] + (["x"] if self.keep_identity else [])
        total = " + ".join(terms)
        return {"relu": f"ReLU({total})", "none": total, "rg": f"GN(ReLU({total}))"}[self.post]


VARIANTS: Dict[str, Variant] = {
    v.name: v for v in (
        Variant("original", "ResNet (Table 1, 'Original')"),
        Variant("b-RGS", "base RGSNet (Fig. 3a)", shortcut="RG", post="none"),
        Variant("d-RGS", "dual RGSNet (Fig. 3b)", shortcut="RG", inner_rg=True, post="none"),
        Variant("Res-RGS", "residual RGSNet (Fig. 3c)", shortcut="RG", keep_identity=True, inner_rg=True, post="none"),
        Variant("RBS", "ReLU + BN shortcut (Table 1)", shortcut="RB", post="none"),
        Variant("GS", "GN-only shortcut (Table 1)", shortcut="G", post="none"),
        Variant("RGB", "RG after the sum (Table 1)", post="rg"),
        Variant("2GN", "GN after both inner ReLUs (Table 1)", relu_gn=True),
        Variant("Preact", "pre-activation ResNet (Table 1)", post="none", preact=True),
    )
}


def get_variant(name, key="MODEL.RGSNET.VARIANT") -> Variant:
    """The row for ``name`` (case-insensitive; a row is returned as it is), or a ConfigError naming
    ``key`` and the choices."""
    if isinstance(name, Variant):
        return name
    by_lower = {n.lower(): v for n, v in VARIANTS.items()}
    try:
        return by_lower[str(name).lower()]
    except KeyError:
        raise ConfigError(f"{key} = {shown(name)} is invalid: choose one of {', '.join(VARIANTS)}") from None


def all_added_layers() -> Tuple[str, ...]:
    """Every module name some variant adds, plus squeeze-and-excitation's ``se``."""
    names = dict.fromkeys(n for v in VARIANTS.values() for n in v.added_layers())
    return tuple(names) + ("se", )


def markdown_table() -> str:
    """The table as docs/ARCHITECTURE.md and the README show it (a test keeps them equal)."""
    rows = ["| variant | block output (identity-shape block) | layers it adds | paper |", "|---|---|---|---|"]
    for v in VARIANTS.values():
        added = ", ".join(f"`{n}`" for n in v.added_layers()) or "none"
        if v.preact:
            added = "none (norms before the convs)"
        rows.append(f"| `{v.name}` | `{v.equation()}` | {added} | {v.paper} |")
    return "\n".join(rows)


def twin_of(variant: Variant) -> Optional[str]:
    """Another variant whose checkpoints hold exactly the same tensors, if any."""
    for other in VARIANTS.values():
        if other.name != variant.name and other.tensor_layout() == variant.tensor_layout():
            return other.name
    return None
