"""Detectron2's checkpointer with the two guarantees this project makes.

1. Nothing half-written: a checkpoint (and the ``last_checkpoint`` tag) is written to a
   temporary file in the same folder, flushed to disk and renamed into place, so a
   process killed while saving leaves the previous complete checkpoint as the latest.
2. No silent partial loads: loading weights into a detector fails if a backbone key
   (``backbone.bottom_up.*``, or the C4 head's ``roi_heads.res5.*``) is missing, or any
   key is unexpected or mis-shaped. Detector heads missing from ImageNet weights are
   expected and allowed.
"""
import os

import torch

from detectron2.checkpoint import DetectionCheckpointer

from .fileio import atomic_write

_BACKBONE_PREFIXES = ("backbone.bottom_up.", "roi_heads.res5.")


class IncompatibleCheckpointError(RuntimeError):
    pass


class RGSCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic saves and strict backbone loading.

    Args:
        strict_backbone: raise instead of warning when a loaded checkpoint leaves backbone
            weights unset or holds unknown or mis-shaped tensors.
    """

    def __init__(self, model, save_dir="", *, strict_backbone=True, **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.strict_backbone = strict_backbone

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

    def load(self, path, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(
                f"checkpoint '{path}' does not exist. For ImageNet weights, convert a classifier "
                "checkpoint with tools/convert_rgsnet_to_d2.py (see the README, 'Converting weights'); "
                "to train from scratch set MODEL.WEIGHTS '' with MODEL.RESNETS.NORM BN/GN and "
                "MODEL.BACKBONE.FREEZE_AT 0."
            )
        return super().load(path, *args, **kwargs)

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        if not self.strict_backbone:
            return incompatible
        missing = [k for k in incompatible.missing_keys if k.startswith(_BACKBONE_PREFIXES)]
        unexpected = list(incompatible.unexpected_keys)
        shapes = [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in incompatible.incorrect_shapes]
        if missing or unexpected or shapes:
            parts = []
            for title, keys in (("missing backbone keys", missing), ("unexpected keys", unexpected), ("mis-shaped keys", shapes)):
                if keys:
                    parts.append(f"{title} ({len(keys)}): " + ", ".join(keys[:12]) + (" ..." if len(keys) > 12 else ""))
            raise IncompatibleCheckpointError(
                "the checkpoint does not match this model's backbone; refusing a partial load.\n  "
                + "\n  ".join(parts)
                + "\nCheck MODEL.RGSNET.VARIANT, MODEL.RESNETS.DEPTH and the width keys against the "
                "weights (tools/convert_rgsnet_to_d2.py prints the settings they need)."
            )
        return incompatible
