"""Detectron2's checkpointer with the guarantees this project makes.

1. Nothing half-written: a checkpoint (and the ``last_checkpoint`` tag) is written to a
   temporary file beside its final name, flushed to disk and renamed into place, so a
   process killed while saving leaves the previous complete checkpoint as the latest.
2. No silent partial loads of the backbone: every tensor of the ResNet-style backbone
   (``backbone.bottom_up.*`` in FPN models, ``backbone.*`` in C4 models, the C4 head's
   ``roi_heads.res5.*``) must be in the checkpoint with its shape, and the checkpoint may
   hold nothing the backbone lacks. Heads are Detectron2's business: a head that is
   missing (ImageNet weights) or shaped for another class count is skipped with a note
   and starts from its initialization, as in Detectron2.
3. No code from someone's weights file: ``.pth`` files are read with
   ``torch.load(weights_only=True)``; ``.pkl`` files (which Detectron2 reads with plain
   ``pickle``) go through a restricted unpickler that builds only containers and numpy
   arrays and refuses everything else before it runs.
4. Clear failures: a missing, empty, truncated or unreadable file is named with the fix.
"""
import os
import re

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling.backbone.resnet import ResNet
from detectron2.modeling.roi_heads import Res5ROIHeads

from ..errors import WeightsError
from ..utils.fileio import atomic_write, remove_stale_temp_files
from ..utils.names import group_blocks
from ..utils.torch_files import CONVERT_COMMAND, load_pickle_safely, load_weights_only

__all__ = ["RGSCheckpointer", "IncompatibleCheckpointError", "check_weights_file"]


_CLASSIFIER_HEAD = re.compile(r"^(fc1000|fc|linear|head)([._]|$)")


class IncompatibleCheckpointError(WeightsError):
    """The checkpoint does not fit the model's backbone; nothing was loaded into a run."""


def check_weights_file(path, what="MODEL.WEIGHTS"):
    """Fail early, naming the fix, when a local weights path is missing, a folder or empty."""
    if not path or "://" in path:
        return
    if not os.path.exists(path):
        raise WeightsError(
            f"{what} = {path!r} does not exist (relative paths are taken from the current directory, "
            f"{os.getcwd()}). Make ImageNet weights with `{CONVERT_COMMAND} CLASSIFIER.pth {path} --variant ...` "
            "(README, 'Pretraining and converting'), or train from scratch with MODEL.WEIGHTS '' "
            "MODEL.RESNETS.NORM BN MODEL.BACKBONE.FREEZE_AT 0."
        )
    if os.path.isdir(path):
        raise WeightsError(f"{what} = {path!r} is a folder; give the checkpoint file inside it")
    if os.path.getsize(path) == 0:
        raise WeightsError(f"{what} = {path!r} is an empty file (an interrupted copy or download?)")


# ----------------------------------------------------------------------------- checkpointer


class RGSCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic saves, strict backbone loads and safe reads.

    Args:
        strict_backbone: raise instead of warning when a checkpoint leaves backbone
            weights unset, or holds unknown or mis-shaped backbone tensors.
    """

    def __init__(self, model, save_dir="", *, strict_backbone=True, **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.strict_backbone = strict_backbone

    # -------------------------------------------------------------- saving

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        path = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(path, lambda f: f.write(last_filename_basename), mode="w")

    def clean_stale_temp_files(self):
        """Remove temporary files that a killed save left in ``save_dir``; returns their names."""
        return remove_stale_temp_files(self.save_dir) if self.save_dir and self.save_to_disk else []

    # -------------------------------------------------------------- loading

    def get_checkpoint_file(self):
        path = super().get_checkpoint_file()
        if path and not os.path.isfile(path):
            tag = os.path.join(self.save_dir, "last_checkpoint")
            raise WeightsError(
                f"{tag} names {os.path.basename(path)!r}, which is not in {self.save_dir!r} (deleted or moved?). "
                "Restore that file, point last_checkpoint at another model_*.pth there, or remove "
                "last_checkpoint to start from MODEL.WEIGHTS."
            )
        return path

    def last_iteration(self):
        """The iteration stored in the checkpoint ``last_checkpoint`` names (memory-mapped, cheap)."""
        path = self.get_checkpoint_file()
        try:
            return int(load_weights_only(path).get("iteration", -1))
        except Exception:
            self._load_file(path)  # raises the named WeightsError for a file it cannot read
            raise WeightsError(f"{path!r} holds no training iteration; is it a checkpoint of a training run?") from None

    def load(self, path, *args, **kwargs):
        check_weights_file(path, what="checkpoint")
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename):
        """Detectron2's formats, every one read through ``utils/torch_files`` (no code runs)."""
        if filename.endswith(".pkl"):
            data = load_pickle_safely(filename)
            if not isinstance(data, dict):
                raise WeightsError(f"{filename!r} holds a {type(data).__name__}, not a dict of arrays")
            if "model" in data and "__author__" in data:
                return data  # Detectron2 model-zoo layout
            data = data.get("blobs", data)  # Detectron (Caffe2) layout
            data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        if filename.endswith(".pyth"):  # pycls, which Detectron2 reads with a plain torch.load
            data = load_weights_only(filename)
            if not isinstance(data, dict) or "model_state" not in data:
                raise WeightsError(f"{filename!r}: a .pyth file (pycls) must hold 'model_state'")
            state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        loaded = super()._load_file(filename)
        if not isinstance(loaded.get("model"), dict):
            raise WeightsError(f"{filename!r} holds no state dict; is it a checkpoint?")
        return loaded

    def _torch_load(self, f):
        return load_weights_only(f)

    def _backbone_prefixes(self):
        prefixes = []
        for name, module in self.model.named_modules():
            if isinstance(module, ResNet):
                prefixes.append(name + "." if name else "")
            elif isinstance(module, Res5ROIHeads):
                prefixes.append(f"{name}.res5." if name else "res5.")
        return tuple(prefixes)

    def _load_model(self, checkpoint):
        heuristic = bool(checkpoint.get("matching_heuristics", False))
        incompatible = super()._load_model(checkpoint)
        prefixes = self._backbone_prefixes()
        if not self.strict_backbone or not prefixes:
            return incompatible

        missing = [k for k in incompatible.missing_keys if k.startswith(prefixes)]
        # A backbone-only (heuristically matched) file meant every tensor for the backbone,
        # except an ImageNet classifier's head (Detectron2's own R-50.pkl holds fc1000).
        unexpected = [k for k in incompatible.unexpected_keys
                      if (heuristic and not _CLASSIFIER_HEAD.match(k)) or k.startswith(prefixes)]
        shapes = [(k, a, b) for k, a, b in incompatible.incorrect_shapes if k.startswith(prefixes)]
        if missing or unexpected or shapes:
            parts = []
            for title, keys in (
                ("missing backbone tensors", group_blocks(missing, self.model.state_dict())),
                ("tensors the backbone does not have", group_blocks(unexpected, [])),
                ("mis-shaped backbone tensors", [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in shapes]),
            ):
                if keys:
                    parts.append(f"{title} ({len(keys)}): " + ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else ""))
            raise IncompatibleCheckpointError(
                "the checkpoint does not match this model's backbone; refusing a partial load.\n  "
                + "\n  ".join(parts)
                + "\nCheck MODEL.RGSNET.VARIANT, MODEL.RESNETS.DEPTH and the width keys against the weights "
                f"(`{CONVERT_COMMAND}` prints the settings converted weights need)."
            )
        skipped = [k for k, _, _ in incompatible.incorrect_shapes]
        if skipped:
            self.logger.warning(
                "Head tensors shaped for another model (e.g. another class count) were skipped and start "
                "from their initialization: " + ", ".join(skipped)
            )
        return incompatible
