"""The errors a user can fix, and the exit status each one means for a command line.

Every command line in ``rgs_detectron.cli`` prints a :class:`UserError` as one message
(no traceback) and exits with its ``exit_code``: 2 when the command line or the config
it names is wrong (as argparse does), 1 when the work itself failed (a missing or
corrupt input file, incompatible weights, a full disk, a diverged run). Anything else
is a bug and keeps its traceback.
"""

from reprlib import repr as shown  # a value in a message, cut short: one read from a file may be huge

__all__ = ["UserError", "ConfigError", "InputError", "WeightsError", "DiskFullError", "first_line", "shown", "require"]


class UserError(Exception):
    """Something the user can fix; the message says what and how."""

    exit_code = 1


class ConfigError(UserError, ValueError):
    """A config key, config file or command-line option is invalid (exit status 2)."""

    exit_code = 2


class InputError(UserError):
    """An input file or folder is missing, unreadable or malformed (exit status 1)."""


class WeightsError(InputError):
    """A weights file cannot be used for this model (exit status 1)."""


class DiskFullError(UserError, OSError):
    """No space left on the device while writing a file (exit status 1)."""


def first_line(error):
    """An exception's first line of text, or its type's name when it has none (for one-line messages)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def require(module, what):
    """``import module``, or a UserError saying that ``what`` needs it and how to install it.

    OpenCV is an extra (``rgs_detectron[opencv]``), so that a user's own build is never replaced; only
    the digits dataset's outlines and the drawing of detections need it.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{what} needs {module}, which is not installed here: pip install 'rgs_detectron[opencv]' "
                        "(or opencv-python-headless, or your own OpenCV build)") from None
