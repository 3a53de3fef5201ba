"""What every command line here shares: error reporting, exit status, config and device set-up."""
import argparse
import re
import sys

from ..config import get_rgsnet_cfg, resolve_device
from ..errors import UserError

__all__ = ["run_tool", "user_message", "add_config_args", "load_cfg", "requested_device", "probability"]

_WORKER_ERROR = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback")


def user_message(error):
    """The message of a UserError, also of one raised in a DataLoader worker: torch re-raises it in the main
    process with the worker's whole traceback as its text, whose last line holds the original message."""
    text = str(error)
    worker = _WORKER_ERROR.match(text)
    start = text.rfind(f"{worker.group(1)}: ") if worker else -1
    return text[start + len(worker.group(1)) + 2:].strip() if start >= 0 else text


def run_tool(main, argv=None, prog=None):
    """Call ``main(argv)``; a UserError (or an OSError about a path) becomes one line on stderr
    and its exit status."""
    prog = prog or main.__module__.rsplit(".", 1)[-1]
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


def add_config_args(parser, *, device=True):
    """``--config-file``, ``--device`` and trailing KEY VALUE overrides, as Detectron2's tools."""
    parser.add_argument("--config-file", required=True, metavar="FILE", help="detector config (yaml)")
    if device:
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
    """The config of ``args`` (file + overrides), ``weights`` and the device (``requested_device``) applied."""
    cfg = get_rgsnet_cfg(args.config_file, args.opts)
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    if hasattr(args, "device"):
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
