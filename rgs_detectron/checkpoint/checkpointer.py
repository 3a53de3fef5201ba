"""Detectron2's checkpointer with the guarantees this project makes.

1. Nothing half-written: a checkpoint (and the ``last_checkpoint`` tag) is written to a
   temporary file beside its final name, flushed to disk and renamed into place, so a
   process killed while saving leaves the previous complete checkpoint as the latest.
2. No silent partial loads of the backbone: every tensor of the ResNet-style backbone
   (``backbone.bottom_up.*`` in FPN models, ``backbone.*`` in C4 models, the C4 head's
   ``roi_heads.res5.*``) must be in the checkpoint with its shape, and the checkpoint may
   hold nothing the backbone lacks. Heads are Detectron2's business in training: a head
   that is missing (ImageNet weights) or shaped for another class count is skipped with a
   note and starts from its initialization. Outside training (``complete=True``: demo,
   export, evaluation) every tensor of the model must come from the checkpoint.
3. Weights know what they are: a checkpoint records the ``RGSNetSpec`` of the model that
   saved it (``rgsnet_spec``, as the converter's files do), and a load refuses a record
   that differs from the model's RGSNet backbone or C4 res5 head in :data:`COMPARED_FIELDS`,
   so twin variants with the same tensors (d-RGS and Res-RGS, b-RGS and GS) never load into
   each other. Files without a record load by names and shapes, with a note.
4. No code from someone's weights file: every format is read through ``utils/torch_files``
   (``torch.load(weights_only=True)`` passed explicitly; ``.pkl`` through a restricted
   unpickler), whatever torch's default or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` say.
5. Clear failures: a missing, empty, truncated or unreadable file, or a URL that cannot be
   downloaded, is named with the fix. ``file://`` paths and Detectron2's
   ``?matching_heuristics=True`` suffix are understood as Detectron2 understands them.
"""
import os
import re
from urllib.parse import parse_qs, unquote, urlparse

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling.backbone.resnet import ResNet
from detectron2.modeling.roi_heads import Res5ROIHeads

from ..errors import ConfigError, WeightsError, first_line
from ..modeling.spec import CFG_KEYS, RGSNetSpec
from ..utils.fileio import atomic_write, remove_stale_temp_files
from ..utils.names import group_blocks, short_list
from ..utils.torch_files import CONVERT_COMMAND, check_file, load_pickle_safely, load_weights_only

__all__ = ["RGSCheckpointer", "IncompatibleCheckpointError", "check_weights_file", "load_weights", "spec_differences"]

_CLASSIFIER_HEAD = re.compile(r"^(fc1000|fc|linear|head)([._]|$)")
# The spec fields that decide an RGSNet's tensors or the function they compute. Not compared:
# norm (FrozenBN after BN pretraining is the normal fine-tuning), shortcut_impl (the same
# function computed another way), rg_init (only where training starts), res5_dilation (a
# fine-tuning choice, as Detectron2 makes it for ImageNet weights).
COMPARED_FIELDS = ("variant", "block", "blocks_per_stage", "stem_channels", "res2_out_channels", "num_groups",
                   "width_per_group", "gn_groups", "se_reduction", "stride_in_1x1", "stem", "in_channels")
_NOT_IN_RES5 = ("stem_channels", "stem", "in_channels")  # a C4 head's res5 has no stem
# What Caffe2 (MSRA) ImageNet ResNets were trained with; Detectron2's defaults.
_CAFFE2_INPUT = "INPUT.FORMAT BGR, MODEL.PIXEL_MEAN [103.53, 116.28, 123.675], MODEL.PIXEL_STD [1, 1, 1], " \
                "MODEL.RESNETS.STRIDE_IN_1X1 True"


class IncompatibleCheckpointError(WeightsError):
    """The checkpoint does not fit the model; nothing was loaded into a run."""


def _weights_location(path):
    """(local path or URL, matching_heuristics) as Detectron2 reads ``MODEL.WEIGHTS``: ``file://``
    is a local path; ``?matching_heuristics=True`` is Detectron2's query, the only one it knows."""
    parsed = urlparse(path)
    where = parsed._replace(query="").geturl()
    if parsed.scheme == "file":
        where = unquote(where[len("file://"):])
    query = parse_qs(parsed.query, keep_blank_values=True)
    heuristics = query.pop("matching_heuristics", ["False"]) == ["True"]
    if query:
        raise ConfigError(f"weights {path!r}: unknown query {parsed.query!r}; Detectron2 understands only "
                          "?matching_heuristics=True")
    return where, heuristics


def check_weights_file(path, what="MODEL.WEIGHTS"):
    """Fail early, naming the fix, when a local weights path is missing, a folder or empty.

    URLs are left to Detectron2, which downloads them when the weights are loaded."""
    if not path:
        return
    path, _ = _weights_location(path)
    if "://" in path:
        return
    if not os.path.exists(path):
        raise WeightsError(
            f"{what} = {path!r} does not exist (relative paths are taken from the current directory, "
            f"{os.getcwd()}). Make ImageNet weights with `{CONVERT_COMMAND} CLASSIFIER.pth {path} --variant ...` "
            "(README, 'Pretraining and converting'), or train from scratch with MODEL.WEIGHTS '' "
            "MODEL.RESNETS.NORM BN MODEL.BACKBONE.FREEZE_AT 0.")
    check_file(path, f"{what} = {path!r}")


# ----------------------------------------------------------------------------- recorded specs


def spec_differences(recorded: RGSNetSpec, spec: RGSNetSpec, res5_only=False):
    """``[(field, recorded value, spec's value)]`` over :data:`COMPARED_FIELDS`; ``res5_only``
    compares what a C4 head's res5 is made of (its block count, no stem)."""
    out = []
    for name in COMPARED_FIELDS:
        a, b = getattr(recorded, name), getattr(spec, name)
        if name == "variant":
            a, b = str(a), str(b)
        elif name == "gn_groups" and not (recorded.variant.uses_group_norm and spec.variant.uses_group_norm):
            continue  # unused by a variant without GroupNorm; a variant difference is reported anyway
        elif res5_only and name == "blocks_per_stage":
            a, b = a[3], b[3]
        elif res5_only and name in _NOT_IN_RES5:
            continue
        if a != b:
            out.append((name, a, b))
    return out


def _strict_parts(model):
    """``[(module name, spec, res5_only)]`` of the model's ResNet backbones and C4 res5 heads, the parts
    that load strictly; ``spec`` is an RGSNet's ``RGSNetSpec``, None for Detectron2's own ResNet."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, ResNet):
            found.append((name, getattr(module, "spec", None), False))
        elif isinstance(module, Res5ROIHeads):
            found.append((f"{name}.res5" if name else "res5", getattr(module.res5, "spec", None), True))
    return found


def _model_specs(model):
    """The ``_strict_parts`` that are RGSNets, whose spec a recorded one must match."""
    return [part for part in _strict_parts(model) if isinstance(part[1], RGSNetSpec)]


# ----------------------------------------------------------------------------- checkpointer


class RGSCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic saves, recorded specs, strict and safe loads.

    Args:
        complete: the checkpoint must set every parameter and buffer of the model (a
            trained model, for a demo, an export or an evaluation), not only the backbone.
    """

    def __init__(self, model, save_dir="", *, complete=False, **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.complete = complete
        self._heuristics = False

    # -------------------------------------------------------------- saving

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        specs = _model_specs(self.model)
        if specs:
            data["rgsnet_spec"] = specs[0][1].to_dict()
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
                "last_checkpoint to start from MODEL.WEIGHTS.")
        return path

    def last_iteration(self):
        """The iteration stored in the checkpoint ``last_checkpoint`` names (memory-mapped, cheap)."""
        path = self.get_checkpoint_file()
        try:  # a file it cannot read is a WeightsError naming it
            return int(load_weights_only(path).get("iteration", -1))
        except (AttributeError, TypeError, ValueError):  # not a dict, or no number there
            raise WeightsError(f"{path!r} holds no training iteration; is it a checkpoint of a training run?") from None

    def load(self, path, *args, **kwargs):
        """Detectron2's load, after resolving ``file://``, the query and a download (one-line failure)."""
        if path:
            path, self._heuristics = _weights_location(path)
            if "://" in path:
                try:
                    path = self.path_manager.get_local_path(path)
                except Exception as e:
                    raise WeightsError(f"cannot download the weights {path} ({type(e).__name__}: {first_line(e)}); "
                                       "download the file yourself and give its local path") from None
            check_weights_file(path, what="checkpoint")
        try:
            return super().load(path, *args, **kwargs)
        finally:  # Detectron2 resets its URL only after a load that succeeded; a refused one must not block the next
            self._heuristics, self._parsed_url_during_load = False, None

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
        if self._heuristics:
            loaded["matching_heuristics"] = True
        return loaded

    def _torch_load(self, f):
        return load_weights_only(f)

    def _check_recorded_spec(self, checkpoint):
        record = checkpoint.pop("rgsnet_spec", None)
        specs = _model_specs(self.model)
        if not specs:
            return
        if not isinstance(record, dict):
            self.logger.info("The checkpoint records no RGSNet architecture (a file made elsewhere?): loading it by "
                             "tensor names and shapes, which cannot tell twin variants (b-RGS/GS, d-RGS/Res-RGS) apart")
            return
        try:
            recorded = RGSNetSpec.from_dict(record)
        except ConfigError as e:
            raise WeightsError(f"the checkpoint records an RGSNet this version cannot build ({e})") from None
        for name, spec, res5_only in specs:
            differences = spec_differences(recorded, spec, res5_only)
            if differences:
                fix = " ".join(f"{CFG_KEYS.get(f, f)} {a!r}" for f, a, _ in differences)
                raise IncompatibleCheckpointError(
                    f"the checkpoint was made for {recorded.variant}-{recorded.depth} but the model's "
                    f"{name or 'backbone'} is {spec.variant}-{spec.depth}; they differ in " +
                    ", ".join(f"{f} ({a!r} in the checkpoint, {b!r} in the model)" for f, a, b in differences) +
                    f". Nothing was loaded. Build the model the weights were made for ({fix}), or use weights "
                    "made for this model.")

    def _warn_caffe2_input(self, checkpoint):
        """Caffe2 (MSRA) ResNets saw BGR, Caffe2's means, std 1, the stride in the 1x1 conv."""
        if checkpoint.get("__author__") != "Caffe2":
            return
        differ = []
        if getattr(self.model, "input_format", "BGR") != "BGR":
            differ.append(f"INPUT.FORMAT {self.model.input_format}")
        std = getattr(self.model, "pixel_std", None)
        if isinstance(std, torch.Tensor) and not torch.allclose(std, torch.ones_like(std)):
            differ.append(f"MODEL.PIXEL_STD {[round(float(s), 3) for s in std.flatten()]}")
        if any(not spec.stride_in_1x1 for _, spec, _ in _model_specs(self.model)):
            differ.append("MODEL.RESNETS.STRIDE_IN_1X1 False")
        if differ:
            self.logger.warning("These are Caffe2 (MSRA) ImageNet weights, trained with " + _CAFFE2_INPUT +
                                "; this model has " + ", ".join(differ) +
                                ": it computes something else than the weights were trained for. Set " + _CAFFE2_INPUT +
                                ", or use torchvision-style weights made by " + CONVERT_COMMAND + " (README).")

    def _load_model(self, checkpoint):
        self._check_recorded_spec(checkpoint)
        self._warn_caffe2_input(checkpoint)
        heuristic = bool(checkpoint.get("matching_heuristics", False))
        incompatible = super()._load_model(checkpoint)
        prefixes = tuple(name + "." if name else "" for name, _, _ in _strict_parts(self.model))

        def problems(missing, unexpected, shapes):  # one line per kind that has any
            kinds = {
                "missing": missing, "tensors the model does not have": group_blocks(unexpected, []),
                "mis-shaped": [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in shapes]
            }
            return "".join(f"\n  {title} ({len(keys)}): {short_list(keys, 12)}" for title, keys in kinds.items()
                           if keys)

        missing = [k for k in incompatible.missing_keys if k.startswith(prefixes)]
        # A backbone-only (heuristically matched) file meant every tensor for the backbone,
        # except an ImageNet classifier's head (Detectron2's own R-50.pkl holds fc1000). BatchNorm's
        # step counters are unused by FrozenBN, the norm fine-tuning uses after BN training.
        unexpected = [
            k for k in incompatible.unexpected_keys if not k.endswith("num_batches_tracked") and (
                (heuristic and not _CLASSIFIER_HEAD.match(k)) or k.startswith(prefixes))
        ]
        shapes = [(k, a, b) for k, a, b in incompatible.incorrect_shapes if k.startswith(prefixes)]
        if prefixes and (missing or unexpected or shapes):
            raise IncompatibleCheckpointError(
                "the checkpoint does not match this model's backbone; refusing a partial load." +
                problems(group_blocks(missing, self.model.state_dict()), unexpected, shapes) +
                "\nCheck MODEL.RGSNET.VARIANT, MODEL.RESNETS.DEPTH and the width keys against the weights "
                f"(`{CONVERT_COMMAND}` prints the settings converted weights need).")
        if self.complete and (incompatible.missing_keys or incompatible.incorrect_shapes):
            raise IncompatibleCheckpointError(
                "the checkpoint leaves parts of this model untrained (they would run with random weights):" +
                problems(sorted({".".join(k.split(".")[:2]) + ".*"
                                 for k in incompatible.missing_keys}), [], incompatible.incorrect_shapes) +
                "\nGive the model_final.pth of a detector trained with this config: ImageNet weights hold only "
                "the backbone, and heads trained for another class count do not fit MODEL.ROI_HEADS.NUM_CLASSES "
                "(or the config's other class-count key).")
        skipped = [k for k, _, _ in incompatible.incorrect_shapes]
        if skipped:
            self.logger.warning(
                "Head tensors shaped for another model (e.g. another class count) were skipped and start "
                "from their initialization: " + ", ".join(skipped))
        return incompatible


def load_weights(model, path, *, complete=False):
    """Load ``path`` into ``model`` with this project's checks; the one line for your own trainer.

    Use it instead of Detectron2's ``DetectionCheckpointer(model).load(path)`` (which only warns)
    when ``model`` has an RGSNet backbone: weights of another variant, depth or width, a plain
    ResNet, or a partial backbone are refused with the reason, and nothing in the file runs.
    ``complete=True`` also refuses weights that leave a head untrained (inference).
    Returns the checkpoint's other contents, as ``DetectionCheckpointer.load``.
    """
    return RGSCheckpointer(model, complete=complete).load(path)
