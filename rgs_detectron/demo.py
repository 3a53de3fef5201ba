"""Run a trained detector on image files and write what it found (library of ``tools/demo.py``).

Outputs, in one folder:

- ``<name>.png`` per processed image: the image with boxes, class names and scores drawn
  by Detectron2's ``Visualizer``. ``<name>`` is the file's stem, made unique with a
  ``_1``, ``_2``... suffix when two inputs share a stem.
- ``detections.json``: every detection, COCO results format
  (``image_id``, ``category_id``, ``bbox`` [x, y, w, h] in original pixels, ``score``).
  ``image_id`` is ``<name>``, a string; ``category_id`` is the dataset's id when the test
  dataset's metadata maps ids (COCO), else the contiguous class index.
- ``summary.json``: one record per processed image (also those with no detections,
  which do not appear in ``detections.json``), the skipped inputs with the reason, the
  category id -> name table, and the config, weights and threshold used.

An input that is missing, matches nothing, or cannot be decoded is reported and skipped;
the run goes on. Errors inside the model are not swallowed: they mean a broken setup.
"""
import glob
import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.structures import BoxMode

try:  # Detectron2's Visualizer imports OpenCV, which Detectron2's wheel does not pull in
    from detectron2.utils.visualizer import Visualizer
except ImportError as e:
    Visualizer, _VISUALIZER_ERROR = None, e

from .config import add_rgsnet_config
from .fileio import atomic_write

__all__ = [
    "IMAGE_EXTENSIONS",
    "DemoRunner",
    "DemoSummary",
    "collect_inputs",
    "resolve_device",
    "setup_cfg",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

logger = logging.getLogger(__name__)


def _write_json(path, obj):
    atomic_write(path, lambda f: json.dump(obj, f, indent=1), mode="w")


def resolve_device(device):
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; a GPU request without one fails."""
    device = (device or "auto").lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is visible to PyTorch; use --device cpu")
    return device


def setup_cfg(config_file, opts=(), *, weights=None, confidence_threshold=None, device="auto"):
    """Frozen config: defaults + RGSNet keys + file + ``opts``; then the explicit options."""
    cfg = get_cfg()
    add_rgsnet_config(cfg)
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if weights:
        cfg.MODEL.WEIGHTS = weights
    if confidence_threshold is not None:
        # The score cut-off lives on a different key per meta-architecture.
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = confidence_threshold
        cfg.MODEL.RETINANET.SCORE_THRESH_TEST = confidence_threshold
        cfg.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = confidence_threshold
    cfg.MODEL.DEVICE = resolve_device(device)
    cfg.freeze()
    return cfg


def collect_inputs(specs):
    """Expand files, folders (their images, not recursive) and globs, in the given order.

    Returns ``(paths, problems)``; ``problems`` holds ``(spec, reason)`` for each spec that
    gave no file. Duplicates (the same file reached twice) are dropped.
    """
    paths, problems, seen = [], [], set()

    def add(path):
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            paths.append(path)

    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(
                os.path.join(spec, n) for n in os.listdir(spec) if n.lower().endswith(IMAGE_EXTENSIONS)
            )
            found = [p for p in found if os.path.isfile(p)]
            if not found:
                problems.append((spec, "folder holds no image files (" + ", ".join(IMAGE_EXTENSIONS) + ")"))
        elif os.path.isfile(spec):
            found = [spec]
        elif glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not found:
                problems.append((spec, "pattern matched no files"))
        else:
            found = []
            problems.append((spec, "no such file or folder"))
        for p in found:
            add(p)
    return paths, problems


def _num_classes(cfg):
    if "RetinaNet" in cfg.MODEL.META_ARCHITECTURE:
        return cfg.MODEL.RETINANET.NUM_CLASSES
    return cfg.MODEL.ROI_HEADS.NUM_CLASSES


def _display_metadata(cfg):
    """Class names/colours of ``cfg.DATASETS.TEST[0]`` when they fit the model, else none.

    Returns (metadata for Visualizer, contiguous index -> output category id, id -> name).
    """
    num_classes = _num_classes(cfg)
    source = MetadataCatalog.get(cfg.DATASETS.TEST[0]) if len(cfg.DATASETS.TEST) else Metadata()
    metadata = Metadata()
    names = source.get("thing_classes")
    if names is not None and len(names) != num_classes:
        logger.warning(
            f"{cfg.DATASETS.TEST[0]} has {len(names)} classes but the model predicts {num_classes}; "
            "labelling detections with class indices"
        )
        names = None
    if names is not None:
        metadata.set(thing_classes=list(names))
        colors = source.get("thing_colors")
        if colors is not None and len(colors) == num_classes:
            metadata.set(thing_colors=list(colors))
    id_map = source.get("thing_dataset_id_to_contiguous_id") if names is not None else None
    to_output_id = {c: d for d, c in id_map.items()} if id_map else {i: i for i in range(num_classes)}
    id_to_name = {to_output_id[i]: (names[i] if names else str(i)) for i in range(num_classes)}
    return metadata, to_output_id, id_to_name


@dataclass
class DemoSummary:
    """What a run did; ``processed`` and ``skipped`` mirror ``summary.json``."""

    output_dir: str
    processed: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    detections: list = field(default_factory=list)

    @property
    def ok(self):
        return len(self.processed) > 0

    def message(self):
        lines = [
            f"Processed {len(self.processed)} image(s) ({len(self.detections)} detections), "
            f"skipped {len(self.skipped)}; results in {self.output_dir}"
        ]
        lines += [f"  skipped {s['input']}: {s['reason']}" for s in self.skipped]
        return "\n".join(lines)


class DemoRunner:
    """Detectron2's ``DefaultPredictor`` plus drawing and result files.

    ``DefaultPredictor`` loads ``cfg.MODEL.WEIGHTS`` with ``DetectionCheckpointer`` and
    applies the test-time resize and ``INPUT.FORMAT``, exactly as evaluation does.
    """

    def __init__(self, cfg):
        if Visualizer is None:
            raise ImportError(
                f"drawing detections needs Detectron2's Visualizer, which needs OpenCV "
                f"({_VISUALIZER_ERROR}): pip install opencv-python-headless"
            )
        weights = cfg.MODEL.WEIGHTS
        if not weights:
            logger.warning("MODEL.WEIGHTS is empty: the detector runs with random weights")
        elif "://" not in weights and not os.path.isfile(weights):
            raise FileNotFoundError(f"weights file not found: {weights}")
        self.cfg = cfg
        self.predictor = DefaultPredictor(cfg)
        self.metadata, self._to_output_id, self.categories = _display_metadata(cfg)

    def __call__(self, image_bgr):
        """Predictions for one HxWx3 BGR uint8 image, in its own pixel coordinates."""
        return self.predictor(image_bgr)

    def draw(self, image_bgr, instances):
        """RGB uint8 image with the detections drawn."""
        visualizer = Visualizer(image_bgr[:, :, ::-1], self.metadata)
        return visualizer.draw_instance_predictions(instances).get_image()

    def to_coco(self, instances, image_id):
        """COCO results-format dicts for one image."""
        if len(instances) == 0:
            return []
        boxes = BoxMode.convert(instances.pred_boxes.tensor.numpy(), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)
        return [
            {
                "image_id": image_id,
                "category_id": int(self._to_output_id[int(c)]),
                "bbox": [float(v) for v in box],
                "score": float(s),
            }
            for box, c, s in zip(boxes, instances.pred_classes.tolist(), instances.scores.tolist())
        ]

    def run(self, paths, output_dir, *, problems=(), progress=True, log=None):
        """Detect on each path, write the outputs into ``output_dir``; return a DemoSummary.

        ``problems`` are ``(input, reason)`` pairs from :func:`collect_inputs`, recorded
        as skipped. ``log`` receives one line per skipped input (default: the logger).
        """
        log = log or logger.warning
        os.makedirs(output_dir, exist_ok=True)
        summary = DemoSummary(output_dir=output_dir)
        for spec, reason in problems:
            log(f"skipped {spec}: {reason}")
            summary.skipped.append({"input": spec, "reason": reason})

        used_names = set()
        for path in tqdm(paths, desc="detect", unit="img", disable=not progress):
            try:
                image = read_image(path, format="BGR")
            except Exception as e:  # missing since listed, undecodable, truncated, ...
                reason = f"cannot read image ({type(e).__name__}: {e})"
                log(f"skipped {path}: {reason}")
                summary.skipped.append({"input": path, "reason": reason})
                continue
            name = stem = os.path.splitext(os.path.basename(path))[0]
            suffix = 0
            while name in used_names:
                suffix += 1
                name = f"{stem}_{suffix}"
            used_names.add(name)

            instances = self(image)["instances"].to("cpu")
            png = os.path.join(output_dir, name + ".png")
            Image.fromarray(np.ascontiguousarray(self.draw(image, instances))).save(png)
            detections = self.to_coco(instances, name)
            summary.detections += detections
            summary.processed.append(
                {
                    "image_id": name,
                    "file_name": path,
                    "visualization": png,
                    "height": int(image.shape[0]),
                    "width": int(image.shape[1]),
                    "num_detections": len(detections),
                }
            )

        _write_json(os.path.join(output_dir, "detections.json"), summary.detections)
        _write_json(
            os.path.join(output_dir, "summary.json"),
            {
                "config": {
                    "weights": self.cfg.MODEL.WEIGHTS,
                    "device": self.cfg.MODEL.DEVICE,
                    "score_thresh_test": (
                        self.cfg.MODEL.RETINANET.SCORE_THRESH_TEST
                        if "RetinaNet" in self.cfg.MODEL.META_ARCHITECTURE
                        else self.cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST
                    ),
                    "min_size_test": self.cfg.INPUT.MIN_SIZE_TEST,
                },
                "categories": [{"id": i, "name": n} for i, n in self.categories.items()],
                "processed": summary.processed,
                "skipped": summary.skipped,
            },
        )
        return summary
