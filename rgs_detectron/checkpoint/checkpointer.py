"""Detectron2's checkpointer with the guarantees this project makes.

1. Nothing half-written: a checkpoint (and the ``last_checkpoint`` tag) is written to a
   temporary file beside its final name, flushed to disk and renamed into place, so a
   process killed while saving leaves the previous complete checkpoint as the latest.
2. No silent partial loads of the backbone: every tensor of the ResNet-style backbone
   (``backbone.bottom_up.*`` in FPN models, ``backbone.*`` in C4 models, the C4 head's
   ``roi_heads.res5.*``) must be in the checkpoint with its shape, and the checkpoint may
   hold nothing the backbone lacks; BatchNorm's step counters are not weights and keep the
   model's. Heads are Detectron2's business in training: a head that is missing (ImageNet
   weights) or shaped for another class count is skipped with a note and starts from its
   initialization. Outside training (``complete=True``: demo, export, evaluation) every
   tensor of the model must come from the checkpoint. A refused load leaves the model as
   it was.
3. Weights know what they are: the record each RGSNet part carries in its state dict
   (``modeling/spec_record.py``) is read before anything loads, naming the file, and placed
   as Detectron2 places the tensors; the ``rgsnet_spec`` mapping of files written before
   records travelled with the tensors counts for every part.
4. No code from someone's weights file: every format is read through ``utils/torch_files``
   (``torch.load(weights_only=True)`` passed explicitly; ``.pkl`` through a restricted
   unpickler), whatever torch's default or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` say.
5. Clear failures: a missing, empty, truncated or unreadable file, or a URL that cannot be
   downloaded, is named with the fix. A ``file://`` URL is read as the local path it names
   (ours: neither Detectron2 nor iopath resolves ``file://``), and Detectron2's
   ``?matching_heuristics=True`` suffix as Detectron2 reads it.
"""
import os
import re
from urllib.parse import parse_qs, unquote, urlparse

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling.backbone.resnet import ResNet
from detectron2.modeling.roi_heads import Res5ROIHeads

from ..errors import ConfigError, WeightsError, first_line
from ..modeling import IncompatibleCheckpointError
from ..modeling.spec_record import RECORD_KEY, CarriesSpec, encode_record, read_record, refuse_other_spec
from ..utils.fileio import atomic_write, remove_stale_temp_files
from ..utils.names import group_blocks, short_list
from ..utils.torch_files import CONVERT_COMMAND, check_file, load_pickle_safely, load_weights_only

__all__ = ["RGSCheckpointer", "IncompatibleCheckpointError", "check_weights_file", "load_weights"]

_CLASSIFIER_HEAD = re.compile(r"^(fc1000|fc|linear|head)([._]|$)")
# A classifier's names (torchvision's, train_classifier's), never those of weights for Detectron2's ResNets.
_CLASSIFIER_LAYOUT = re.compile(r"^(module\.)?layer[1-4]\.\d+\.")
# What Caffe2 (MSRA) ImageNet ResNets were trained with; Detectron2's defaults.
_CAFFE2_INPUT = "INPUT.FORMAT BGR, MODEL.PIXEL_MEAN [103.53, 116.28, 123.675], MODEL.PIXEL_STD [1, 1, 1], " \
                "MODEL.RESNETS.STRIDE_IN_1X1 True"


def _weights_location(path):
    """(local path or URL, matching_heuristics) of ``MODEL.WEIGHTS``: a ``file://`` URL is the local path it
    names (our reading: neither Detectron2 nor iopath resolves it); ``?matching_heuristics=True`` is
    Detectron2's query, the only one it knows."""
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


def _strict_parts(model):
    """``[(module name, module)]`` of the parts that load strictly: ResNet backbones and C4 res5 heads."""
    heads = {f"{name}.res5" if name else "res5" for name, m in model.named_modules() if isinstance(m, Res5ROIHeads)}
    return [(name, m) for name, m in model.named_modules() if isinstance(m, ResNet) or name in heads]


def _carriers(model):
    """The RGSNet parts, which carry the record of their spec: ``[(module name, module)]``."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, CarriesSpec)]


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
        # fvcore's save, written atomically; the model's state dict holds the records of its RGSNet parts
        data = {"model": self.model.state_dict(), **{k: c.state_dict() for k, c in self.checkpointables.items()}}
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        atomic_write(save_file, lambda f: torch.save({**data, **kwargs}, f))
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
        self._source = path
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
            # Detectron (Caffe2) layout
            data = {k: v for k, v in data.get("blobs", data).items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        if filename.endswith(".pyth"):  # pycls, which Detectron2 reads with a plain torch.load
            data = load_weights_only(filename)
            if not isinstance(data, dict) or "model_state" not in data:
                raise WeightsError(f"{filename!r}: a .pyth file (pycls) must hold 'model_state'")
            state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        loaded = super()._load_file(filename)
        model = loaded.get("model")
        if not isinstance(model, dict):
            raise WeightsError(f"{filename!r} holds no state dict; is it a checkpoint?")
        if "state_dict" in model or any(_CLASSIFIER_LAYOUT.match(str(k)) for k in model):
            raise WeightsError(f"{filename!r} is an ImageNet classifier checkpoint, not Detectron2 weights: convert it "
                               f"(`{CONVERT_COMMAND} {filename} CONVERTED.pth`, with --variant/--depth if it records "
                               "no architecture) and give CONVERTED.pth")
        if self._heuristics:
            loaded["matching_heuristics"] = True
        return loaded

    def _torch_load(self, f):
        return load_weights_only(f)

    def _place_records(self, checkpoint):
        """Read each RGSNet part's record (naming the file) and refuse one that differs, before anything loads;
        then give the part its record under its own key. The file's record keys are matched as Detectron2 matches
        its tensors: exactly, or with matching heuristics by the longest key that the part's ends with (a converted
        file's ``res5._extra_state`` for a C4 head's res5, its ``_extra_state`` for a backbone)."""
        state, source = checkpoint["model"], repr(self._source)
        self._convert_ndarray_to_tensor(state)  # as fvcore does next: a .pkl holds numpy arrays
        found = {k: state.pop(k) for k in [k for k in state if isinstance(k, str) and k.endswith(RECORD_KEY)]}
        legacy = read_record(checkpoint.pop("rgsnet_spec", None), f"{source}: rgsnet_spec")
        heuristic = checkpoint.get("matching_heuristics", False)
        for name, module in _carriers(self.model):
            key = f"{name}.{RECORD_KEY}" if name else RECORD_KEY
            best = max((k for k in found if k == key or (heuristic and key.endswith("." + k))), key=len, default=None)
            recorded = read_record(found[best], f"{source}: {best}") if best else legacy
            if recorded is not None:
                refuse_other_spec(recorded, module.spec, f"the model's {name or 'backbone'}", source)
                state[key] = encode_record(recorded)

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
        if any(not module.spec.stride_in_1x1 for _, module in _carriers(self.model)):
            differ.append("MODEL.RESNETS.STRIDE_IN_1X1 False")
        if differ:
            self.logger.warning("These are Caffe2 (MSRA) ImageNet weights, trained with " + _CAFFE2_INPUT +
                                "; this model has " + ", ".join(differ) +
                                ": it computes something else than the weights were trained for. Set " + _CAFFE2_INPUT +
                                ", or use torchvision-style weights made by " + CONVERT_COMMAND + " (README).")

    def _load_model(self, checkpoint):
        """Detectron2's load, checked; a refusal puts back what it changed, so the model is as it was."""
        self._place_records(checkpoint)
        self._warn_caffe2_input(checkpoint)
        before = {k: v.to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        try:  # Detectron2 reads matching_heuristics and leaves it
            return self._refuse_partial(super()._load_model(checkpoint), checkpoint.get("matching_heuristics"))
        except Exception:
            self.model.load_state_dict(before)
            raise

    def _refuse_partial(self, incompatible, heuristic):
        prefixes = tuple(name + "." if name else "" for name, _ in _strict_parts(self.model))

        def problems(missing, unexpected, shapes):  # one line per kind that has any
            kinds = {
                "missing": missing, "tensors the model does not have": group_blocks(unexpected, []),
                "mis-shaped": [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in shapes]
            }
            return "".join(
                f"\n  {title} ({len(keys)}): {short_list(keys, 12)}" for title, keys in kinds.items() if keys)

        # BatchNorm's step counters are not weights: missing ones keep the model's (converted weights hold none),
        # unexpected ones are unused by FrozenBN, the norm fine-tuning uses after BN training.
        incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if not k.endswith("num_batches_tracked")]
        missing = [k for k in incompatible.missing_keys if k.startswith(prefixes)]
        # A backbone-only (heuristically matched) file meant every tensor for the backbone,
        # except an ImageNet classifier's head (Detectron2's own R-50.pkl holds fc1000).
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
                problems(sorted({".".join(k.split(".")[:2]) + ".*" for k in incompatible.missing_keys}), [],
                         incompatible.incorrect_shapes) +
                "\nGive the model_final.pth of a detector trained with this config: ImageNet weights hold only "
                "the backbone, and heads trained for another class count do not fit MODEL.ROI_HEADS.NUM_CLASSES "
                "(or the config's other class-count key).")
        if incompatible.incorrect_shapes:
            self.logger.warning("Head tensors shaped for another model (e.g. another class count) were skipped and "
                                "start from their initialization: " +
                                ", ".join(k for k, _, _ in incompatible.incorrect_shapes))
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
