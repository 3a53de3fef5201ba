"""Reading weights files without running anyone's code: the one place every load goes through.

* ``.pth``/``.pt``/``.pyth``/anything torch wrote: ``torch.load(weights_only=True)``, passed
  explicitly (whatever torch's default or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` say), on the
  CPU, memory-mapped when the file's format allows (reading a checkpoint twice costs little).
* ``.pkl`` (Detectron2's model zoo, Detectron's Caffe2 files): a restricted unpickler that
  builds only containers, numbers, strings and numpy arrays and refuses everything else
  before it runs (Detectron2 itself uses plain ``pickle``).

Every failure is a :class:`WeightsError` naming the file: missing, a folder, empty,
truncated, or holding objects a weights file never needs.

A weights *source* (:func:`weights_source`) is a path or ``torchvision:ENUM.VALUE``,
torchvision's published weights, found in (or downloaded once into) torch's own cache.
"""
import hashlib
import os
import pickle
import re
from collections import OrderedDict
from urllib.parse import urlparse

import torch

from ..errors import ConfigError, WeightsError, first_line
from .names import short_list

__all__ = [
    "load_weights_only", "load_pickle_safely", "load_state_dict", "state_dict_in", "weights_source", "check_file",
    "CONVERT_COMMAND", "RefusedByTorch"
]

CONVERT_COMMAND = "python -m rgs_detectron.cli.convert"
_TORCHVISION = "torchvision:"

# Containers, numpy arrays and scalars (numpy 1 and 2 name their modules numpy.core and numpy._core), and bytes as
# Python 2 pickles (Detectron's model zoo) store them.
_NUMPY = (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
_PICKLE_ALLOWED = {("collections", "OrderedDict"), ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                   *((f"numpy.{core}.{module}", name) for core in ("core", "_core") for module, name in _NUMPY)}


class _Refused(pickle.UnpicklingError):
    """A pickle asked for a global that is not on the list; refused before anything ran."""


class _ArraysOnlyUnpickler(pickle.Unpickler):

    def find_class(self, module, name):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")


def check_file(path, name=None):
    """A WeightsError unless ``path`` is a non-empty file; messages call it ``name`` (default: the path)."""
    name = name or repr(path)
    if not os.path.exists(path):
        raise WeightsError(f"weights file {name} does not exist")
    if os.path.isdir(path):
        raise WeightsError(f"{name} is a folder; give the weights file inside it")
    if os.path.getsize(path) == 0:
        raise WeightsError(f"{name} is an empty file (an interrupted copy or download?)")


def load_pickle_safely(path):
    """Unpickle ``path`` allowing only containers, numbers, strings and numpy arrays."""
    check_file(path)
    with open(path, "rb") as f:
        try:
            return _ArraysOnlyUnpickler(f, encoding="latin1").load()
        except _Refused as e:
            raise WeightsError(
                f"{path!r} is a pickle that asks for {e}, which a weights file never needs; it was refused "
                "and nothing in it ran. Use weights from a source you trust, saved as .pth, or convert "
                f"a classifier with `{CONVERT_COMMAND}`.") from None
        except Exception as e:
            raise WeightsError(f"cannot read weights file {path!r} as a pickle of arrays; is it truncated or corrupt? "
                               f"({type(e).__name__}: {first_line(e)})") from None


class RefusedByTorch(WeightsError):
    """An intact checkpoint that this torch's weights-only loader does not read: not corrupt, and not to be thrown
    away (the message says which torch reads it)."""


# Globals that the weights-only loader allows from a torch release on (older files of this project hold them).
_ALLOWED_FROM = {"collections.Counter": "2.4"}


def load_weights_only(path):
    """``torch.load(path, weights_only=True)`` on the CPU, memory-mapped when possible; errors named, with torch's
    own reason."""
    check_file(path)
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # files older than torch's zip format cannot be memory-mapped
            if "mmap" not in str(e) and "zipfile" not in str(e).lower():
                raise
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # the archive opened; its pickle asks for something torch does not build
        reason = " ".join(re.split(r"\n\n|\. ", str(e).split("WeightsUnpickler error:")[-1].strip())[0].split())
        refused = re.search(r"(?:GLOBAL|class) ([\w.]+)", reason)
        newer = _ALLOWED_FROM.get(refused.group(1)) if refused else None
        if newer and torch.__version__ < newer:
            raise RefusedByTorch(f"torch {torch.__version__} cannot read {path!r}: its weights-only loader refuses "
                                 f"{refused.group(1)} (torch: {reason}). The file is intact and nothing in it ran; "
                                 f"torch >= {newer} reads it") from None
        raise WeightsError(f"cannot read weights file {path!r}: it is not a plain tensor checkpoint (torch: {reason})."
                           " It was refused and not executed: nothing in it ran. Re-save only the state dict "
                           "(torch.save(model.state_dict(), path)) from a source you trust.") from None
    except Exception as e:  # not a zip archive torch can open: truncated, damaged, or another format
        raise WeightsError(f"cannot read weights file {path!r} as a PyTorch checkpoint; is it truncated or corrupt? "
                           f"(torch: {type(e).__name__}: {first_line(e)})") from None


def load_state_dict(path):
    """A tensor-only state dict from a checkpoint file (see :func:`state_dict_in`)."""
    return state_dict_in(load_weights_only(path), path)


def state_dict_in(obj, path):
    """The tensor-only state dict of checkpoint ``obj``, read from ``path`` (named in errors).

    Accepts the state dict itself or one under ``state_dict``/``model``; strips the
    ``module.`` prefix that (Distributed)DataParallel adds.
    """
    inner = [obj[k] for k in ("state_dict", "model") if isinstance(obj, dict) and isinstance(obj.get(k), dict)]
    obj = inner[0] if inner else obj
    if not isinstance(obj, dict) or not obj:
        raise WeightsError(f"{path!r} holds no state dict (found {type(obj).__name__})")
    not_tensors = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise WeightsError(f"{path!r}: these entries are not tensors: {short_list(not_tensors)}")
    return OrderedDict((k.removeprefix("module."), v) for k, v in obj.items())


def weights_source(source):
    """``(path, name)`` of a weights source: ``source`` itself, or for ``torchvision:ENUM.VALUE`` (any of
    torchvision's weights, e.g. ``torchvision:ResNet50_Weights.IMAGENET1K_V1``) the file in torch's cache,
    ``$TORCH_HOME/hub/checkpoints``, where ``weights.get_state_dict()`` keeps it, named in messages with the source.

    A cached file must match the sha256 prefix in its name (torch.hub's convention, ``torch.hub.HASH_REGEX``), so
    that a file placed there by hand is torchvision's; a missing one is downloaded once by ``torch.hub``, which
    checks the same prefix. Reading it is left to :func:`load_weights_only`, the same safe reader as any file's.
    """
    if not source.startswith(_TORCHVISION):
        return source, source
    from torchvision import models

    name = source[len(_TORCHVISION):]
    try:
        weights = models.get_weight(name)
    except (ValueError, KeyError, TypeError):  # TypeError: a builder's name (resnet50) instead of its enum's
        raise ConfigError(f"{source!r}: torchvision has no weights {name!r}; {_spelling(models, name)}") from None
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    file_name = os.path.basename(urlparse(weights.url).path)
    path = os.path.join(folder, file_name)
    found = torch.hub.HASH_REGEX.search(file_name)
    prefix = found.group(1) if found else None
    if os.path.exists(path):
        check_file(path, f"{path!r} (torch's cached {source})")
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if prefix and not digest.startswith(prefix):
            raise WeightsError(f"{path!r} is not torchvision's {name}: torch.hub names that file by its sha256, which "
                               f"starts {prefix}, this file's starts {digest[:len(prefix)]}; delete it to download "
                               f"the real one, or place the file of {weights.url} there")
        return path, f"{source} ({path})"
    try:
        os.makedirs(folder, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, path, prefix, progress=True)
    except Exception as e:
        usable = os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)
        raise WeightsError(f"cannot download {source} from {weights.url} ({type(e).__name__}: {first_line(e)}); " + (
            f"offline, place that file at {path!r} and run again" if usable else f"torch's cache {folder!r} "
            "($TORCH_HOME/hub/checkpoints) is not a folder this user can write: set TORCH_HOME to one (e.g. "
            "TORCH_HOME=$HOME/.cache/torch)")) from None
    return path, f"{source} ({path})"


def _spelling(models, name):
    """How to name torchvision's weights, for a name that names none (e.g. the builder's ``resnet50.IMAGENET1K_V1``)."""
    head, _, value = name.partition(".")
    try:  # an enum's name (ResNet50_Weights), else a builder's (resnet50)
        enum = getattr(models, head) if head[:1].isupper() else models.get_model_weights(head)
        members = ", ".join(enum.__members__)
    except (AttributeError, ValueError, KeyError):
        return "give ENUM.VALUE, e.g. torchvision:ResNet50_Weights.IMAGENET1K_V1"
    if value in enum.__members__:
        return f"write torchvision:{enum.__name__}.{value}"
    return f"give torchvision:{enum.__name__}.VALUE, VALUE one of {members}"
