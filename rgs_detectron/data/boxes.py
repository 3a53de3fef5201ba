"""Find boxes that cannot be right, once per dataset, and say so.

Left alone, Detectron2 quietly changes them (or crashes, on a box that is not four numbers): a
box with a negative width or height comes
out of the augmentation as the box around its corners (another, valid box), and
zero-size boxes or boxes wholly outside the image are dropped later without a word;
NaN or infinite coordinates go into the losses as they are.
Here they are counted and reported before training, then dropped
(``DATASETS.INVALID_BOXES: "drop"``, the default) or refused (``"fail"``); valid boxes are
never rewritten. Boxes that only extend past the image edge are valid: Detectron2 clips
them, and they are counted in the report.
"""
import logging
import math
import numbers

from detectron2.data.build import filter_images_with_only_crowd_annotations
from detectron2.structures import BoxMode

from ..errors import ConfigError, InputError

__all__ = ["check_boxes", "check_box_policy", "checked_train_dicts"]

INVALID_BOX_POLICIES = ("drop", "fail")
logger = logging.getLogger(__name__)


def _problem(ann, width, height):
    if "bbox" not in ann:
        return None
    box = ann["bbox"]
    if not (hasattr(box, "__len__") and len(box) == 4 and all(isinstance(v, numbers.Real) for v in box)):
        return "not four numbers"
    if not all(math.isfinite(v) for v in box):
        return "NaN or infinite coordinates"  # every comparison below is False for NaN
    x0, y0, x1, y1 = BoxMode.convert(list(box), ann.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYXY_ABS)
    if x1 < x0 or y1 < y0:
        return "negative width or height"
    if x1 == x0 or y1 == y0:
        return "zero width or height"
    if width and height and (x0 >= width or y0 >= height or x1 <= 0 or y1 <= 0):
        return "wholly outside the image"
    if width and height and (x0 < 0 or y0 < 0 or x1 > width or y1 > height):
        return "clipped"  # valid
    return None


def check_box_policy(policy, key="DATASETS.INVALID_BOXES"):
    """A ConfigError naming ``key`` unless ``policy`` is one of ``INVALID_BOX_POLICIES``."""
    if policy not in INVALID_BOX_POLICIES:
        raise ConfigError(f"{key} = {policy!r} is invalid: choose one of {', '.join(INVALID_BOX_POLICIES)}")


YACS_SETTING = "DATASETS.INVALID_BOXES {}"  # how a user sets the policy: a yacs override, or a LazyConfig one
LAZY_SETTING = "train.invalid_boxes={}"


def check_boxes(dataset_dicts, what, policy="drop", setting=YACS_SETTING):
    """Return ``dataset_dicts`` with invalid boxes dropped (or raise, with ``"fail"``).

    ``what`` names the data in the report (e.g. the dataset names), ``setting`` how the
    user's config sets the policy (the report's fix). The input records are not modified;
    records that needed no change are returned as they are.
    """
    check_box_policy(policy)
    counts, examples, out = {}, {}, []
    for record in dataset_dicts:
        annotations = record.get("annotations") or []
        keep = []
        for ann in annotations:
            problem = _problem(ann, record.get("width"), record.get("height"))
            if problem:
                counts[problem] = counts.get(problem, 0) + 1
                examples.setdefault(problem, f"{record.get('file_name')} bbox {ann['bbox']!r}")
            if problem in (None, "clipped"):
                keep.append(ann)
        out.append(record if len(keep) == len(annotations) else {**record, "annotations": keep})
    clipped = counts.pop("clipped", 0)
    if clipped:
        logger.info(f"{what}: {clipped} boxes extend past their image and are clipped to it")
    if not counts:
        return out
    total = sum(counts.values())
    lines = "; ".join(f"{n} {problem} (e.g. {examples[problem]})" for problem, n in counts.items())
    if policy == "fail":
        raise InputError(f"{what} has {total} invalid boxes: {lines}. Fix the annotations, or set "
                         f"{setting.format('drop')} to train without them.")
    logger.warning(f"{what}: dropped {total} invalid boxes: {lines} ({setting.format('fail')} refuses them)")
    return out


def checked_train_dicts(dataset_dicts, what, policy="drop", filter_empty=True, setting=YACS_SETTING):
    """Training records with their boxes checked, then (``filter_empty``) without the images left with no
    usable annotation, as Detectron2 filters them; an InputError when no image is left. Both trainers'."""
    dicts = check_boxes(dataset_dicts, what, policy, setting)
    if filter_empty:
        dicts = filter_images_with_only_crowd_annotations(dicts)
    if not dicts:
        raise InputError(f"{what} has no image with a usable annotation")
    return dicts
