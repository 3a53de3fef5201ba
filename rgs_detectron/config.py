"""The ``MODEL.RGSNET`` config node and its validation.

Only what RGSNet adds lives here; depth, widths, norm, grouping, freezing and output
features stay on Detectron2's own keys (``MODEL.RESNETS.*``, ``MODEL.BACKBONE.*``).
"""
from detectron2.config import CfgNode as CN

# Paper names (Sec. 3, Table 1) -> canonical spelling used in configs and docs.
VARIANTS = ("original", "b-RGS", "d-RGS", "Res-RGS", "RBS", "GS", "RGB", "2GN", "Preact")

# Bottleneck blocks per stage for the depths the paper trains (Table 8, Sec. 4.4).
BLOCKS_PER_STAGE = {
    26: [2, 2, 2, 2],
    32: [2, 3, 3, 2],
    38: [3, 3, 3, 3],
    44: [3, 4, 4, 3],
    50: [3, 4, 6, 3],
    62: [3, 4, 10, 3],
    77: [3, 4, 15, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
    200: [3, 24, 36, 3],
}

SHORTCUT_IMPLS = ("auto", "reference", "lean")


def add_rgsnet_config(cfg):
    """Add the ``MODEL.RGSNET`` node to a Detectron2 config (in place). Idempotent."""
    if "RGSNET" in cfg.MODEL:
        return cfg
    _C = cfg
    _C.MODEL.RGSNET = CN()
    # Block design, one of VARIANTS (matched case-insensitively).
    _C.MODEL.RGSNET.VARIANT = "Res-RGS"
    # GroupNorm groups at this width. 0 = the paper's rule: 32 at width 1x
    # (RES2_OUT_CHANNELS 256), scaled with width (8 at 0.25x).
    _C.MODEL.RGSNET.GN_GROUPS = 0
    # Bottleneck blocks per stage res2..res5. Empty = from MODEL.RESNETS.DEPTH
    # through the paper's depth table (26, 32, 38, 44, 50, 62, 77, 101, 152, 200).
    _C.MODEL.RGSNET.BLOCKS_PER_STAGE = []
    # Squeeze-and-excitation reduction in the residual branch (Table 9, "Res-RGS+SE").
    # 0 = no SE; 16 is the SE paper's value.
    _C.MODEL.RGSNET.SE_REDUCTION = 0
    # How the RG shortcut is computed: "reference" (plain ops), "lean" (saves only
    # the block input and per-group statistics for backward), "auto" (lean while
    # training, reference otherwise and when tracing/exporting).
    _C.MODEL.RGSNET.SHORTCUT_IMPL = "auto"
    # COCO evaluation engine: "auto" (faster-coco-eval when installed, else pycocotools),
    # "faster_coco_eval" or "pycocotools". Same AP either way; see docs/USAGE.md.
    _C.TEST.COCO_EVAL_ENGINE = "auto"
    return cfg


def _fail(key, value, expected):
    raise ValueError(f"cfg.{key} = {value!r} is invalid: {expected}")


def canonical_variant(name):
    """Return the canonical spelling of a variant name, or fail naming the choices."""
    by_lower = {v.lower(): v for v in VARIANTS}
    key = str(name).lower()
    if key not in by_lower:
        _fail("MODEL.RGSNET.VARIANT", name, "choose one of " + ", ".join(VARIANTS))
    return by_lower[key]


def blocks_per_stage(cfg):
    """Blocks in res2..res5, from the explicit list or the depth table."""
    explicit = list(cfg.MODEL.RGSNET.BLOCKS_PER_STAGE)
    if explicit:
        if len(explicit) != 4 or not all(isinstance(n, int) and n >= 1 for n in explicit):
            _fail(
                "MODEL.RGSNET.BLOCKS_PER_STAGE",
                explicit,
                "give 4 positive integers (blocks in res2..res5), or [] to use MODEL.RESNETS.DEPTH",
            )
        return explicit
    depth = cfg.MODEL.RESNETS.DEPTH
    if depth not in BLOCKS_PER_STAGE:
        _fail(
            "MODEL.RESNETS.DEPTH",
            depth,
            "RGSNet depths are "
            + ", ".join(str(d) for d in BLOCKS_PER_STAGE)
            + "; for another layout set MODEL.RGSNET.BLOCKS_PER_STAGE to 4 block counts",
        )
    return list(BLOCKS_PER_STAGE[depth])


def gn_groups(cfg):
    """GroupNorm group count: explicit, or 32 scaled with the width (RES2_OUT_CHANNELS / 256)."""
    groups = cfg.MODEL.RGSNET.GN_GROUPS
    if not isinstance(groups, int) or groups < 0:
        _fail("MODEL.RGSNET.GN_GROUPS", groups, "give a positive group count, or 0 for the paper's rule")
    if groups:
        return groups
    res2 = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS
    scaled = 32 * res2 // 256
    if scaled < 1 or 32 * res2 % 256:
        _fail(
            "MODEL.RGSNET.GN_GROUPS",
            groups,
            f"the automatic rule (32 x RES2_OUT_CHANNELS / 256) gives no whole count for "
            f"RES2_OUT_CHANNELS={res2}; set MODEL.RGSNET.GN_GROUPS explicitly",
        )
    return scaled


def check_groups_divide(groups, channels, where):
    """Fail at build time if GroupNorm cannot split ``channels`` into ``groups``."""
    if channels % groups:
        divisors = [g for g in range(1, channels + 1) if channels % g == 0]
        _fail(
            "MODEL.RGSNET.GN_GROUPS",
            groups,
            f"it must divide every channel count it normalizes, but {where} has {channels} "
            f"channels (valid group counts there: {divisors})",
        )


def shortcut_impl(cfg):
    impl = str(cfg.MODEL.RGSNET.SHORTCUT_IMPL).lower()
    if impl not in SHORTCUT_IMPLS:
        _fail("MODEL.RGSNET.SHORTCUT_IMPL", cfg.MODEL.RGSNET.SHORTCUT_IMPL, "choose one of " + ", ".join(SHORTCUT_IMPLS))
    return impl


def se_reduction(cfg):
    r = cfg.MODEL.RGSNET.SE_REDUCTION
    if not isinstance(r, int) or r < 0:
        _fail("MODEL.RGSNET.SE_REDUCTION", r, "give 0 (no SE) or a positive reduction ratio such as 16")
    return r
