"""Export a trained detector to TorchScript or ONNX, or its backbone with torch.export, verified against eager.

The detector formats are traced through Detectron2's ``TracingAdapter`` (docs/ARCHITECTURE.md, "Dependencies":
tracing matches eager exactly; ONNX needs ``dynamo=False`` at opset 17). The exported
model takes one ``uint8`` image tensor ``(3, H, W)`` in ``cfg.INPUT.FORMAT`` channel
order, already resized the way the user wants (the test-time resize is not part of the
graph), with any H and W. It returns, for GeneralizedRCNN models, a tuple
``(pred_boxes (N, 4) x1y1x2y2 in that image's pixels, pred_classes (N,), scores (N,),
image_size (2,))`` - the fields of Detectron2's ``Instances``, sorted by name, then the size.

``pt2-backbone`` is ``torch.export``'s ExportedProgram of ``model.backbone`` alone (the
detector's heads do not export this way): a float tensor ``(N, 3, H, W)`` normalised and
padded as the detector's ``preprocess_image`` does, to the dict of feature maps.

Every export is checked before it is kept: the serialized model is loaded back and run
on a sample image and on a second image of another height and width (proving the dynamic
shape), and must reproduce eager outputs within ``TOLERANCES`` (same counts and classes
for detections). Only then is it written, with
``atomic_write``, so a failed export leaves nothing; an existing export is replaced only
with ``overwrite``. The model is ``load_trained_model``'s: strictly loaded, no random head.
Whatever ``MODEL.RGSNET.SHORTCUT_IMPL`` says, tracing and exporting record the RG shortcut's
plain reference ops: ``ReLUGroupNorm.forward`` is the one place that decides.
"""
import copy
import io
import logging
import os
import sys
import warnings
from collections import namedtuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.export import Dim

from detectron2.data.detection_utils import build_augmentation
from detectron2.export import TracingAdapter
from detectron2.export.flatten import InstancesSchema
from detectron2.modeling import GeneralizedRCNN

from .data.images import read_image
from .errors import ConfigError, UserError
from .utils.fileio import atomic_write

__all__ = ["DETECTOR_FORMATS", "FORMATS", "TOLERANCES", "ExportVerificationError", "export_model", "sample_images"]

# The first two hold the whole detector; torch.export's ExportedProgram holds its backbone only.
DETECTOR_FORMATS = ("torchscript", "onnx")
BACKBONE_FORMAT = "pt2-backbone"
FORMATS = DETECTOR_FORMATS + (BACKBONE_FORMAT, )
FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx", BACKBONE_FORMAT: "backbone.pt2"}
ONNX_OPSET = 17
# Max absolute difference allowed on boxes (pixels) and scores, or on feature maps. Tracing and
# torch.export replay the very same kernels, so they are held to (near) equality; ONNX Runtime
# has its own kernels.
TOLERANCES = {"torchscript": 1e-4, "onnx": 1e-3, BACKBONE_FORMAT: 1e-4}
# The smallest image side the exported backbone takes (torch.export specialises any size of 1,
# which the FPN's coarsest level would reach below it).
PT2_MIN_SIDE = 96
# torch.export and torch.compile trace with TorchDynamo, which supports each Python from a torch release on: the
# torch each Python needs for pt2-backbone and the predictor's compile option (3.11: any supported torch).
# tools/env_plan.py reads this literal to name what a kept torch lacks, so it stays a plain dict.
PT2_NEEDS_TORCH = {"3.12": "2.4", "3.13": "2.6"}

logger = logging.getLogger(__name__)


def require_dynamo(feature, api, otherwise):
    """Refuse ``feature`` in one line where this torch's TorchDynamo (behind ``api``) lacks this Python."""
    python = "%d.%d" % sys.version_info[:2]
    if torch.__version__ < PT2_NEEDS_TORCH.get(python, "0"):  # a TorchVersion
        raise ConfigError(f"{feature} needs torch >= {PT2_NEEDS_TORCH[python]} on Python {python} ({api}); this is "
                          f"torch {torch.__version__}: upgrade torch, or {otherwise}")


class ExportVerificationError(UserError):
    """The exported file does not reproduce the eager model; nothing was written."""


ExportResult = namedtuple("ExportResult", "format path checks")  # checks: one dict per verified image


def _synthetic_image(height, width, seed=0):
    """Noise with a few flat rectangles: structure for the RPN, deterministic."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 64, (height, width, 3), dtype=np.uint8)
    for _ in range(6):
        h, w = rng.integers(height // 6, height // 2), rng.integers(width // 6, width // 2)
        y, x = rng.integers(0, height - h), rng.integers(0, width - w)
        image[y:y + h, x:x + w] = rng.integers(64, 256, 3, dtype=np.uint8)
    return image


def sample_images(cfg, image_path=None):
    """Two ``uint8 (3, H, W)`` tensors of different heights and widths, as the model sees them.

    The first is ``image_path`` (or a synthetic image) after the test-time resize; the
    second is the same content at about 3/4 of the height and 9/10 of the width, sizes
    that are not multiples of the backbone stride, so padding is exercised too.
    """
    short = cfg.INPUT.MIN_SIZE_TEST
    image = read_image(image_path, cfg.INPUT.FORMAT) if image_path else _synthetic_image(short, round(short * 4 / 3))
    image = build_augmentation(cfg, is_train=False)[0].get_transform(image).apply_image(image)  # the test-time resize
    first = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
    h, w = first.shape[1:]
    size = (max(32, int(h * 0.75) | 1), max(32, int(w * 0.9) | 1))  # odd, so never stride-aligned
    second = F.interpolate(first[None].float(), size=size, mode="bilinear", align_corners=False)[0]
    return [first, second.round().clamp(0, 255).to(torch.uint8)]


def _rcnn_inference(model, inputs):
    # Boxes stay in the input image's coordinates: no rescaling to an "original" size
    # that the exported graph could not know.
    return [{"instances": model.inference(inputs, do_postprocess=False)[0]}]


def _output_names(schema, count):
    """Names of the ``count`` flattened outputs of ``schema`` (an adapter's ``outputs_schema``, known once it has
    run): the Instances field names, then "image_size"."""
    while not isinstance(schema, InstancesSchema) and getattr(schema, "schemas", None) and len(schema.schemas) == 1:
        schema = schema.schemas[0]
    if isinstance(schema, InstancesSchema) and len(schema.keys) + 1 == count:
        return list(schema.keys) + ["image_size"]
    return [f"output_{i}" for i in range(count)]


def _as_numpy(outputs):
    return [o.detach().cpu().numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in outputs]


def _max_diff(a, b):
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0


def _greedy_order(ref_boxes, ref_classes, boxes, classes):
    """Index of the closest same-class exported detection for each eager one, or None.

    Detections with (nearly) tied scores may come out in a different order from another
    runtime; pairing them up keeps such a tie from counting as a mismatch.
    """
    taken, order = np.zeros(len(boxes), dtype=bool), []
    for box, cls in zip(ref_boxes, ref_classes):
        candidates = np.flatnonzero(~taken & (classes == cls))
        if not len(candidates):
            return None
        best = candidates[np.abs(boxes[candidates] - box).max(axis=1).argmin()]
        taken[best] = True
        order.append(best)
    return np.asarray(order, dtype=np.int64)


def compare_outputs(names, reference, exported, atol):
    """Check exported outputs against eager ones; return a summary dict or raise."""
    ref, out = dict(zip(names, _as_numpy(reference))), dict(zip(names, _as_numpy(exported)))
    for name in names:
        if ref[name].shape != out[name].shape:
            raise ExportVerificationError(f"output {name!r} has shape {out[name].shape}, eager gives {ref[name].shape}")
    per_detection = [n for n in names if n != "image_size" and ref[n].ndim >= 1]
    if "pred_boxes" in ref and "pred_classes" in ref and len(ref["pred_boxes"]):
        if not all(_max_diff(ref[n], out[n]) <= atol for n in per_detection):
            order = _greedy_order(ref["pred_boxes"], ref["pred_classes"], out["pred_boxes"], out["pred_classes"])
            if order is None:
                raise ExportVerificationError("detected classes differ from eager")
            out = {n: (v[order] if n in per_detection else v) for n, v in out.items()}
    diffs = {}
    for name in names:
        a, b = ref[name], out[name]
        if a.dtype.kind in "iub":
            if not np.array_equal(a, b):
                raise ExportVerificationError(f"output {name!r} differs from eager")
        else:
            diffs[name] = d = _max_diff(a, b)
            if not d <= atol:
                raise ExportVerificationError(f"output {name!r} differs from eager by up to {d:.3g} (allowed {atol:g})")
    summary = {"max_abs_diff": diffs}
    return {"detections": len(ref["pred_boxes"]), **summary} if "pred_boxes" in ref else summary


def _bytes(save, *args, **kwargs):
    """What ``save(*args, file, **kwargs)`` writes: an export stays in memory until it is verified."""
    buffer = io.BytesIO()
    save(*args, buffer, **kwargs)
    return buffer.getvalue()


def _trace_torchscript(adapter, image):
    """(serialized bytes, a runner of the model loaded back from them)."""
    data = _bytes(torch.jit.save, torch.jit.trace(adapter, (image, ), check_trace=False))  # we check ourselves
    return data, torch.jit.load(io.BytesIO(data), map_location=image.device)


def _trace_onnx(adapter, image, names):
    per_detection = {n: {0: "detections"} for n in names if n != "image_size"}
    # The TorchScript-based exporter: torch's default before 2.9, chosen with dynamo=False from 2.5 (torch 2.3 and
    # 2.4 have no such argument).
    legacy = {"dynamo": False} if torch.__version__ >= "2.5" else {}
    data = _bytes(torch.onnx.export, adapter, (image, ), opset_version=ONNX_OPSET, input_names=["image"],
                  output_names=names, dynamic_axes={"image": {1: "height", 2: "width"}, **per_detection}, **legacy)
    import onnx
    import onnxruntime

    onnx.checker.check_model(onnx.load_from_string(data))
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return data, (lambda img: session.run(None, {"image": img.cpu().numpy()}))


def _references(model, images):
    """(adapter, output names, images, eager outputs) for verifying exports of ``model``."""
    # eval(): a fresh nn.Module is in training mode, and torch.onnx.export restores the
    # adapter's mode afterwards, which would switch the detector to training too.
    inference = _rcnn_inference if isinstance(model, GeneralizedRCNN) else None
    adapter = TracingAdapter(model, [{"image": images[0]}], inference).eval()
    with torch.no_grad():
        eager = [adapter(img) for img in images]
    return adapter, _output_names(adapter.outputs_schema, len(eager[0])), images, eager


def _backbone_references(model, images):
    """(backbone, output names, its inputs: the images as the detector preprocesses them, eager outputs)."""
    backbone = model.backbone
    inputs = [model.preprocess_image([{"image": img}]).tensor for img in images]
    with torch.no_grad():
        eager = [backbone(x) for x in inputs]
    names = list(eager[0])
    return backbone, names, inputs, [[out[n] for n in names] for out in eager]


def _export_program(backbone, x, names):
    """(serialized ExportedProgram of ``backbone``, a runner of the program loaded back from it).

    Batch, height and width are dynamic; height and width must be multiples of the backbone's
    ``size_divisibility`` (as the detector pads them) and at least ``PT2_MIN_SIDE``.
    """
    step = max(backbone.size_divisibility, 1)
    least = -(-PT2_MIN_SIDE // step)
    dims = {0: Dim("batch", min=1), 2: step * Dim("height", min=least), 3: step * Dim("width", min=least)}
    with torch.no_grad():  # a batch of 2, so that the batch size is not specialised to 1
        program = torch.export.export(backbone, (torch.cat([x, x]), ), dynamic_shapes=(dims, ))
    data = _bytes(torch.export.save, program)
    loaded = torch.export.load(io.BytesIO(data)).module()

    def run(t):
        outputs = loaded(t)  # once per image, not once per output name
        return [outputs[n] for n in names]

    return data, run


def export_model(model, images, output_dir, formats=DETECTOR_FORMATS, overwrite=False):
    """Export ``model`` (or its backbone) in each format, verify on every image, then write it.

    Returns one ExportResult per format. Raises ExportVerificationError (writing no file of
    that format) when an export does not reproduce eager outputs, and ConfigError before
    any work when an output exists and ``overwrite`` is False.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ConfigError(f"unknown export format(s) {sorted(unknown)}: choose from {', '.join(FORMATS)}")
    if BACKBONE_FORMAT in formats:
        require_dynamo(f"--format {BACKBONE_FORMAT}", "torch.export", "export torchscript/onnx")
    paths = {fmt: os.path.join(output_dir, FILE_NAMES[fmt]) for fmt in formats}
    existing = [path for path in paths.values() if os.path.exists(path)]
    if existing and not overwrite:
        raise ConfigError(f"{', '.join(existing)} already exist; pass --overwrite to replace them")
    os.makedirs(output_dir, exist_ok=True)
    device = next(model.parameters()).device
    detector_references = {}  # on the CPU or not -> (adapter, names, images, eager outputs)

    results = []
    for fmt in formats:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # thousands, all expected
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
            # Repeated on every call by torch.jit and the TorchScript-based ONNX exporter (deprecated in PyTorch 2.x,
            # working in 2.14); docs/USAGE.md says it once instead.
            warnings.filterwarnings("ignore", r".*torch\.jit\.\w+` is deprecated", FutureWarning)
            warnings.filterwarnings("ignore", r".*legacy TorchScript-based ONNX", DeprecationWarning)
            warnings.filterwarnings("ignore", r".*feature will be removed", DeprecationWarning)
            if fmt == BACKBONE_FORMAT:
                backbone, names, inputs, eager = _backbone_references(model, [img.to(device) for img in images])
                data, run = _export_program(backbone, inputs[0], names)
            else:
                # ONNX Runtime runs on the CPU: trace and compare a CPU copy, so that GPU arithmetic
                # (TF32 convolutions, CUDA RoIAlign) is not mistaken for an export error.
                cpu = fmt == "onnx" and device.type != "cpu"
                if cpu not in detector_references:
                    detector_references[cpu] = _references(copy.deepcopy(model).cpu(), [img.cpu() for img in images]) \
                        if cpu else _references(model, [img.to(device) for img in images])
                adapter, names, inputs, eager = detector_references[cpu]
                data, run = (_trace_torchscript(adapter, inputs[0]) if fmt == "torchscript" else _trace_onnx(
                    adapter, inputs[0], names))
        checks = []
        for x, ref in zip(inputs, eager):
            with torch.no_grad():
                got = run(x)
            try:
                check = compare_outputs(names, ref, got, TOLERANCES[fmt])
            except ExportVerificationError as e:
                raise ExportVerificationError(f"{fmt} export does not match eager PyTorch on a "
                                              f"{tuple(x.shape[-2:])} image: {e}") from None
            checks.append({"image_size": tuple(x.shape[-2:]), **check})
        atomic_write(paths[fmt], lambda f, d=data: f.write(d))
        if fmt != BACKBONE_FORMAT and sum(c.get("detections", 0) for c in checks) == 0:
            logger.warning(f"{fmt}: the eager model found nothing on the sample images, so only empty outputs "
                           "were compared; give a real --sample-image or lower the score threshold to check more")
        results.append(ExportResult(fmt, paths[fmt], checks))
    return results
