"""Reading checkpoint files with ``torch.load(weights_only=True)``, cheaply when possible."""
import torch

__all__ = ["load_weights_only"]


def load_weights_only(path, mmap=True):
    """``torch.load(path, weights_only=True)`` on the CPU, memory-mapped when the file's format
    allows it (the zip format of torch >= 1.6; older files are read whole)."""
    if mmap:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e) and "zipfile" not in str(e).lower():
                raise
    return torch.load(path, map_location="cpu", weights_only=True)
