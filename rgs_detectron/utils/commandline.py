"""What every command line shares before it imports anything heavy: argument types and exit status.

Only the standard library and ``rgs_detectron.errors`` are imported here, and the commands import
torch and Detectron2 inside their ``_main`` after parsing, so ``--help`` answers at once where the
parser needs no library facts. ``run_tool`` is the one way a command runs: a UserError becomes one
line and its exit status (docs/ARCHITECTURE.md, "Command lines"), and the deprecation warnings that
torch and setuptools print about Detectron2's own code (``torch.jit.script`` at import,
``pkg_resources``, ``torch.meshgrid``, DDP's ``broadcast_buffers``, and the ``is_fx_tracing``
notice torch logs when Detectron2's ROI pooler asks) are silenced while the command runs: a user
can do nothing about them. Other warnings, the user's own included, still show, and importing the
library silences nothing.
"""
import argparse
import contextlib
import logging
import math
import os
import re
import sys
import warnings

from ..errors import UserError

__all__ = [
    "run_tool", "user_message", "quiet_third_party_deprecations", "add_config_args", "probability", "positive_int",
    "non_negative_int", "positive_float", "output_folder", "output_file"
]

# (category, the start of the message) of the known third-party deprecation notices about Detectron2's code.
THIRD_PARTY_DEPRECATIONS = [
    (FutureWarning, "`torch.jit.script` is deprecated"),
    (UserWarning, "pkg_resources is deprecated as an API"),
    (UserWarning, "torch.meshgrid"),
    (FutureWarning, "`broadcast_buffers` is deprecated"),
]
# (logger, the start of the message) of the notices torch logs, once a process, about Detectron2's code.
THIRD_PARTY_LOG_NOTICES = [("torch.fx._symbolic_trace", "is_fx_tracing will return true")]
_WORKER_ERROR = re.compile(r"Caught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback")


def user_message(error):
    """The message of a UserError, also of one raised in a DataLoader worker: torch re-raises it in the main
    process with the worker's whole traceback as its text, whose last line holds the original message."""
    text = str(error)
    worker = _WORKER_ERROR.match(text)
    start = text.rfind(f"{worker.group(1)}: ") if worker else -1
    return text[start + len(worker.group(1)) + 2:].strip() if start >= 0 else text


@contextlib.contextmanager
def quiet_third_party_deprecations():
    """Silence exactly :data:`THIRD_PARTY_DEPRECATIONS` in this process and in the processes it starts, and
    :data:`THIRD_PARTY_LOG_NOTICES` in this process (a launched worker enters this again)."""
    dropped = [(logging.getLogger(name), lambda record, start=start: not record.getMessage().startswith(start))
               for name, start in THIRD_PARTY_LOG_NOTICES]
    for logger, drop in dropped:
        logger.addFilter(drop)
    with warnings.catch_warnings():
        for category, start in THIRD_PARTY_DEPRECATIONS:
            warnings.filterwarnings("ignore", message=re.escape(start), category=category)
        children = [f"ignore:{start}:{category.__name__}" for category, start in THIRD_PARTY_DEPRECATIONS]
        before = os.environ.get("PYTHONWARNINGS")
        os.environ["PYTHONWARNINGS"] = ",".join(([before] if before else []) + children)
        try:
            yield
        finally:
            if before is None:
                del os.environ["PYTHONWARNINGS"]
            else:
                os.environ["PYTHONWARNINGS"] = before
            for logger, drop in dropped:
                logger.removeFilter(drop)


def run_tool(main, argv, prog):
    """Call ``main(argv)`` with the third-party deprecation notices silenced; a UserError (or an OSError about
    a path) becomes one line on stderr and its exit status."""
    with quiet_third_party_deprecations():
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
    parser.add_argument(
        "--device", help="cpu, cuda, cuda:N, or auto (a GPU when usable); "
        "default: the config's MODEL.DEVICE (Detectron2's default is cuda)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, last on the line (e.g. MODEL.RGSNET.VARIANT b-RGS)")
    return parser


def _output_path(kind, other):
    """argparse type: where to write a ``kind`` ("folder", made when missing, or "file"), not an existing ``other``."""

    def parse(text):
        if os.path.lexists(text) and os.path.isdir(text) == (kind == "file"):
            raise argparse.ArgumentTypeError(f"{text!r} is a {other}, not a {kind}: give the {kind} to write")
        return text

    return parse


output_folder, output_file = _output_path("folder", "file"), _output_path("file", "folder")


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


positive_int, non_negative_int, positive_float = (_bounded(int, 0, False), _bounded(int, 0,
                                                                                    True), _bounded(float, 0, False))
