"""Reading weights files without running anyone's code: the one place every load goes through.

* ``.pth``/``.pt``/``.pyth``/anything torch wrote: ``torch.load(weights_only=True)``, passed
  explicitly (whatever torch's default or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` say), on the
  CPU, memory-mapped when the file's format allows (reading a checkpoint twice costs little).
* ``.pkl`` (Detectron2's model zoo, Detectron's Caffe2 files): a restricted unpickler that
  builds only containers, numbers, strings and numpy arrays and refuses everything else
  before it runs (Detectron2 itself uses plain ``pickle``).

Every failure is a :class:`WeightsError` naming the file: missing, a folder, empty,
truncated, or holding objects a weights file never needs.

A weights *source* (:func:`weights_source_path`) is a path or ``torchvision:ENUM.VALUE``,
torchvision's published weights, found in (or downloaded once into) torch's own cache.
"""
import os
import pickle
import re
from collections import OrderedDict
from urllib.parse import urlparse

import torch

from ..errors import ConfigError, WeightsError, first_line
from .names import short_list

__all__ = [
    "load_weights_only", "load_pickle_safely", "load_state_dict", "state_dict_in", "weights_source_path", "check_file",
    "CONVERT_COMMAND"
]

CONVERT_COMMAND = "python -m rgs_detectron.cli.convert"
_TORCHVISION = "torchvision:"

_PICKLE_ALLOWED = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # Python 2 pickles (Detectron's model zoo) store bytes this way
}


class _Refused(pickle.UnpicklingError):
    pass


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


def load_weights_only(path):
    """``torch.load(path, weights_only=True)`` on the CPU, memory-mapped when possible; errors named."""
    check_file(path)
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:  # files older than torch's zip format cannot be memory-mapped
            if "mmap" not in str(e) and "zipfile" not in str(e).lower():
                raise
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = "global" in str(e).lower()  # torch names the class it refused; else the stream is foreign
        raise WeightsError(f"cannot read weights file {path!r}: it is not a plain tensor checkpoint (" + (
            "it holds Python objects other than tensors and containers, e.g. classes that would run code"
            if refused else "a truncated or corrupt file, or a pickle that torch.save did not write") +
                           "). It was refused and not executed: nothing in it ran. Re-save only the state dict "
                           "(torch.save(model.state_dict(), path)) from a source you trust.") from None
    except Exception as e:  # truncated zip, garbage, ...
        raise WeightsError(f"cannot read weights file {path!r} as a PyTorch checkpoint; is it truncated or corrupt? "
                           f"({type(e).__name__}: {first_line(e)})") from None


def load_state_dict(path):
    """A tensor-only state dict from a checkpoint file (see :func:`state_dict_in`)."""
    return state_dict_in(load_weights_only(path), path)


def state_dict_in(obj, path):
    """The tensor-only state dict of checkpoint ``obj``, read from ``path`` (named in errors).

    Accepts the state dict itself or one under ``state_dict``/``model``; strips the
    ``module.`` prefix that (Distributed)DataParallel adds.
    """
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise WeightsError(f"{path!r} holds no state dict (found {type(obj).__name__})")
    not_tensors = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise WeightsError(f"{path!r}: these entries are not tensors: {short_list(not_tensors)}")
    return OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in obj.items())


def weights_source_path(source):
    """The local file of a weights source: ``source`` itself, or for ``torchvision:ENUM.VALUE``
    (any of torchvision's weights, e.g. ``torchvision:ResNet50_Weights.IMAGENET1K_V1``) the file
    in torch's cache, ``$TORCH_HOME/hub/checkpoints``, where ``weights.get_state_dict()`` keeps
    it. Only a file not cached yet is downloaded (by ``torch.hub``, its hash checked); reading it
    is left to :func:`load_weights_only`, so it goes through the same safe reader as any file.
    """
    if not source.startswith(_TORCHVISION):
        return source
    from torchvision import models

    name = source[len(_TORCHVISION):]
    try:
        weights = models.get_weight(name)
    except (ValueError, KeyError):
        enum = getattr(models, name.split(".")[0], None)
        known = ", ".join(getattr(enum, "__members__", {}))
        raise ConfigError(f"{source!r}: torchvision has no weights {name!r}; give ENUM.VALUE, " +
                          (f"one of {known}" if known else "e.g. torchvision:ResNet50_Weights.IMAGENET1K_V1")) from None
    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    file_name = os.path.basename(urlparse(weights.url).path)
    path = os.path.join(folder, file_name)
    if not os.path.exists(path):
        digest = re.search(r"-([a-f0-9]{6,})\.", file_name)
        try:
            os.makedirs(folder, exist_ok=True)
            torch.hub.download_url_to_file(weights.url, path, digest.group(1) if digest else None, progress=True)
        except Exception as e:
            raise WeightsError(f"cannot download {source} from {weights.url} ({type(e).__name__}: {first_line(e)}); "
                               f"offline, place {file_name} in {folder} (torch's cache, $TORCH_HOME/hub/checkpoints) "
                               "and run again") from None
    return path
