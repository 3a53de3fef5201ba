"""What every command line here shares: error reporting, exit status, config and device set-up."""
import argparse
import math
import re
import sys

from ..config import get_rgsnet_cfg, resolve_device
from ..errors import UserError
from ..modeling.spec import RG_INITS, STEMS, RGSNetSpec
from ..modeling.variants import VARIANTS

__all__ = ["run_tool", "user_message", "add_config_args", "load_cfg", "requested_device", "probability",
           "positive_int", "non_negative_int", "positive_float", "add_spec_args", "spec_from_args"]

_WORKER_ERROR = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback")


def user_message(error):
    """The message of a UserError, also of one raised in a DataLoader worker: torch re-raises it in the main
    process with the worker's whole traceback as its text, whose last line holds the original message."""
    text = str(error)
    worker = _WORKER_ERROR.match(text)
    start = text.rfind(f"{worker.group(1)}: ") if worker else -1
    return text[start + len(worker.group(1)) + 2:].strip() if start >= 0 else text


def run_tool(main, argv, prog):
    """Call ``main(argv)``; a UserError (or an OSError about a path) becomes one line on stderr, after ``prog``,
    and its exit status."""
    try:
        return main(argv) or 0
    except UserError as e:
        print(f"{prog}: error: {user_message(e)}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a path the user gave: a file where a folder should be, no permission, ...
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def add_config_args(parser):
    """``--config-file``, ``--device`` and trailing KEY VALUE overrides, as Detectron2's tools."""
    parser.add_argument("--config-file", required=True, metavar="FILE", help="detector config (yaml)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N, or auto (a GPU when usable); "
                        "default: the config's MODEL.DEVICE (Detectron2's default is cuda)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, last on the line (e.g. MODEL.RGSNET.VARIANT b-RGS)")
    return parser


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


def probability(text):
    """argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1]")
    return value


def _bounded(kind, low, inclusive):
    """argparse type: a finite ``kind`` number above ``low`` (or equal to it when ``inclusive``)."""
    what = f"{'an integer' if kind is int else 'a number'} {'>=' if inclusive else '>'} {low:g}"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text} is invalid: give {what}")
        return value

    return parse


positive_int, non_negative_int, positive_float = (_bounded(int, 0, False), _bounded(int, 0, True),
                                                  _bounded(float, 0, False))

# The options describing an RGSNetSpec (dest names = RGSNetSpec.create's keywords).
SPEC_ARGS = ("variant", "depth", "width_mult", "blocks_per_stage", "stem_channels", "res2_out_channels", "num_groups",
             "width_per_group", "gn_groups", "se_reduction", "stem", "rg_init")


def add_spec_args(parser):
    """The model's ``RGSNetSpec`` as options, each defaulting to None so a command can tell "given"
    from "default" (``spec_from_args`` fills in ``RGSNetSpec.create``'s defaults)."""
    g = parser.add_argument_group("model (RGSNetSpec; RGSNetSpec.create's defaults for what is not given)")
    g.add_argument("--variant", help="one of: " + ", ".join(VARIANTS) + " (default Res-RGS)")
    g.add_argument("--depth", type=positive_int, help="26, 32, 38, 44, 50, 62, 77, 101, 152 or 200 (default 50)")
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
