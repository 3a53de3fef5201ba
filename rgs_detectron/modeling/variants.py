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

from ..errors import ConfigError

__all__ = ["Variant", "VARIANTS", "get_variant", "twin_of", "all_added_layers", "markdown_table", "SHORTCUTS", "POST_SUM"]

# h(x) on identity-shape blocks. "RG" is the paper's nonlinear shortcut GN(ReLU(x)).
SHORTCUTS = {
    "identity": "x",
    "RG": "GN(ReLU(x))",
    "RB": "BN(ReLU(x))",
    "G": "GN(x)",
}
# f, applied to the sum.
POST_SUM = {"relu": "ReLU(y)", "none": "y", "rg": "GN(ReLU(y))"}


@dataclass(frozen=True)
class Variant:
    """One block design. Layers it adds to a ResNet bottleneck follow from the fields:

    ``shortcut_norm`` (shortcut "RG"/"G": GroupNorm, "RB": BatchNorm), ``inner_norm``
    (``inner_rg``), ``relu_norm1``/``relu_norm2`` (``relu_gn``), ``output_norm``
    (post "rg"); ``se.fc1``/``se.fc2`` come with squeeze-and-excitation, any variant.
    """

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

    @property
    def shortcut_norm(self) -> Optional[str]:
        """Kind of the shortcut's norm: "GN", "BN" or None."""
        return {"RG": "GN", "G": "GN", "RB": "BN"}.get(self.shortcut)

    @property
    def uses_group_norm(self) -> bool:
        return bool(self.group_norm_sites())

    def group_norm_sites(self) -> Tuple[str, ...]:
        """Which channel counts a GroupNorm of this variant normalizes ("out", "bottleneck")."""
        sites = []
        if self.shortcut_norm == "GN" or self.post == "rg":
            sites.append("out")
        if self.inner_rg or self.relu_gn:
            sites.append("bottleneck")
        return tuple(sites)

    def added_layers(self) -> Tuple[str, ...]:
        """Names of the modules this row adds to every identity-shape block (SE aside)."""
        names = ["shortcut_norm"] if self.shortcut_norm else []
        names += ["inner_norm"] if self.inner_rg else []
        names += ["relu_norm1", "relu_norm2"] if self.relu_gn else []
        names += ["output_norm"] if self.post == "rg" else []
        return tuple(names)

    def tensor_layout(self):
        """What the variant's added tensors look like; equal layouts cannot be told apart."""
        return (self.shortcut_norm, self.inner_rg, self.relu_gn, self.post == "rg", self.preact)

    def equation(self) -> str:
        """The identity-shape block's output, as in the docs' variant table."""
        if self.preact:
            return "x + F_pre(x), F_pre = (BN-ReLU-conv) x3"
        branch = "F_inner(x)" if self.inner_rg else ("F_2GN(x)" if self.relu_gn else "F(x)")
        terms = [branch, SHORTCUTS[self.shortcut]] + (["x"] if self.keep_identity else [])
        total = " + ".join(terms)
        return {"relu": f"ReLU({total})", "none": total, "rg": f"GN(ReLU({total}))"}[self.post]


VARIANTS: Dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("original", "ResNet (Table 1, 'Original')"),
        Variant("b-RGS", "base RGSNet (Fig. 3a)", shortcut="RG", post="none"),
        Variant("d-RGS", "dual RGSNet (Fig. 3b)", shortcut="RG", inner_rg=True, post="none"),
        Variant("Res-RGS", "residual RGSNet (Fig. 3c)", shortcut="RG", keep_identity=True, inner_rg=True,
                post="none"),
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
        raise ConfigError(f"{key} = {name!r} is invalid: choose one of {', '.join(VARIANTS)}") from None


def all_added_layers() -> Tuple[str, ...]:
    """Every module name some variant adds, plus squeeze-and-excitation's ``se``."""
    names = dict.fromkeys(n for v in VARIANTS.values() for n in v.added_layers())
    return tuple(names) + ("se",)


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
