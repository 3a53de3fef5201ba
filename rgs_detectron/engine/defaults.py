"""Turning a command line into a config, a device and an ``RGSNetSpec``: the library side of what the
commands share (argument types and exit status, which need no torch: ``utils/commandline.py``)."""
from ..config import get_rgsnet_cfg, resolve_device
from ..modeling.spec import BLOCKS_PER_DEPTH, RG_INITS, STEMS, RGSNetSpec
from ..modeling.variants import VARIANTS
from ..utils.commandline import non_negative_int, positive_float, positive_int

__all__ = ["load_cfg", "requested_device", "add_spec_args", "spec_from_args", "SPEC_ARGS"]


def requested_device(option, opts=(), unset="auto"):
    """The one device rule of the command lines: ``--device`` when given, else the last ``MODEL.DEVICE`` among the
    KEY VALUE overrides ``opts``, else ``unset``: the config's own ``MODEL.DEVICE``, or "auto" for the tools that run
    a shipped config meant to run anywhere (digits_demo, benchmark). ``config.resolve_device`` then resolves it."""
    if option:
        return option
    values = [value for key, value in zip(opts[0::2], opts[1::2]) if key == "MODEL.DEVICE"]
    return values[-1] if values else unset


def load_cfg(args, *, weights=None, freeze=True):
    """The config of ``args`` (``add_config_args``'s: file + overrides), ``weights`` and the device
    (``requested_device``) applied."""
    cfg = get_rgsnet_cfg(args.config_file, args.opts)
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.DEVICE = resolve_device(requested_device(args.device, unset=cfg.MODEL.DEVICE))
    if freeze:
        cfg.freeze()
    return cfg


# The options describing an RGSNetSpec (dest names = RGSNetSpec.create's keywords).
SPEC_ARGS = ("variant", "depth", "width_mult", "blocks_per_stage", "stem_channels", "res2_out_channels", "num_groups",
             "width_per_group", "gn_groups", "se_reduction", "stem", "rg_init")


def add_spec_args(parser):
    """The model's ``RGSNetSpec`` as options, each defaulting to None so a command can tell "given"
    from "default" (``spec_from_args`` fills in ``RGSNetSpec.create``'s defaults)."""
    g = parser.add_argument_group("model (RGSNetSpec; RGSNetSpec.create's defaults for what is not given)")
    g.add_argument("--variant", help="one of: " + ", ".join(VARIANTS) + " (default Res-RGS)")
    g.add_argument("--depth", type=positive_int, help=f"one of {', '.join(map(str, BLOCKS_PER_DEPTH))} (default 50)")
    g.add_argument("--width-mult", type=positive_float, help="channel multiplier: 0.25, 0.5, 1, 2 (default 1)")
    g.add_argument("--blocks-per-stage", type=positive_int, nargs=4, metavar="N",
                   help="explicit blocks in res2..res5 (instead of --depth)")
    g.add_argument("--stem-channels", type=positive_int, help="stem output channels (default 64 x width)")
    g.add_argument("--res2-out-channels", type=positive_int, help="res2 output channels (default 256 x width)")
    g.add_argument("--num-groups", type=positive_int, help="ResNeXt cardinality (default 1)")
    g.add_argument("--width-per-group", type=positive_int, help="bottleneck channels per group (default 64 x width)")
    g.add_argument("--gn-groups", type=non_negative_int, help="GroupNorm groups (default 0: 32 scaled with width)")
    g.add_argument("--se-reduction", type=non_negative_int, help="squeeze-and-excitation reduction (default 0: none)")
    g.add_argument("--stem", choices=STEMS, help="imagenet (default) or small (3x3, no max-pool: 28-32 pixel images)")
    g.add_argument("--rg-init", choices=RG_INITS,
                   help="initial scale of the RG shortcut's GroupNorm: paper (1, default) or zero (Res-RGS only)")
    return g


def spec_from_args(args):
    """The ``RGSNetSpec`` that ``add_spec_args``'s options describe."""
    return RGSNetSpec.create(**{k: getattr(args, k) for k in SPEC_ARGS if getattr(args, k, None) is not None})
