"""A small detection dataset made of real handwritten digits, generated locally.

The digits are scikit-learn's bundled ``load_digits`` (1,797 8x8 scans, shipped inside
the package, so nothing is downloaded). Each canvas gets 1-4 digits at random positions
and scales on a noisy background; the class is the digit (10 classes). The same images
are described twice: a COCO-JSON file per split (boxes, and the outline of each digit's
ink as a polygon, for Mask R-CNN) and a PASCAL VOC tree (boxes), so both Detectron2
evaluators can be exercised on data that exists on any machine.

Layout under ``root`` (default ``$DETECTRON2_DATASETS/rgs_digits``)::

    JPEGImages/{id}.jpg
    Annotations/{id}.xml                 # VOC
    ImageSets/Main/{train,val}.txt       # VOC
    annotations/instances_{train,val}.json  # COCO
    .complete                            # written last: the parameters it was made with
"""
import itertools
import json
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError, InputError, require

CLASS_NAMES = tuple(str(d) for d in range(10))
SPLITS = ("train", "val")
_DONE_MARK = ".complete"
FORMAT_VERSION = 2  # 2: COCO annotations carry the digit's outline as a polygon (for Mask R-CNN)


def _digit_images():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def _overlaps(box, boxes, margin=2):
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin and b[1] < y1 + margin for b in boxes)


def _render(rng, digits, labels, params):
    size, min_scale, max_scale = params["image_size"], params["min_scale"], params["max_scale"]
    canvas = rng.uniform(0.0, 0.25, size=(size, size)).astype(np.float32)
    canvas += rng.normal(0.0, 0.04, size=canvas.shape).astype(np.float32)
    color = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
    objects = []
    for _ in range(rng.integers(1, params["max_objects"] + 1)):
        for _attempt in range(20):
            side = int(rng.integers(min_scale, max_scale + 1))
            x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, size=2))
            box = (x0, y0, x0 + side, y0 + side)
            if not _overlaps(box, [o[0] for o in objects]):
                break
        else:
            continue
        k = int(rng.integers(len(digits)))
        patch = np.asarray(Image.fromarray(digits[k]).resize((side, side), Image.BILINEAR))
        region = canvas[y0:y0 + side, x0:x0 + side]
        np.maximum(region, patch, out=region)
        # The box is the digit's ink, not the padded 8x8 cell.
        ys, xs = np.nonzero(patch > 0.2)
        if len(xs) == 0:
            continue
        tight = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
        objects.append((tight, int(labels[k]), _ink_polygons(patch > 0.2, x0, y0, tight)))
    rgb = np.clip(canvas[..., None] * color[None, None, :], 0, 1)
    return Image.fromarray((rgb * 255).astype(np.uint8)), objects


def _ink_polygons(ink, x0, y0, box):
    """The outlines of a digit's ink (one polygon per connected piece) in image coordinates, COCO style."""
    cv2 = require("cv2", "the digits dataset (the outlines of the digits)")

    contours, _ = cv2.findContours(ink.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [[float(v) for point in c[:, 0, :] for v in (point[0] + x0 + 0.5, point[1] + y0 + 0.5)] for c in contours
                if len(c) >= 3]
    if not polygons:
        bx0, by0, bx1, by1 = box
        polygons = [[float(v) for v in (bx0, by0, bx1, by0, bx1, by1, bx0, by1)]]
    return polygons


def _xml_node(parent, tag, **children):
    """A ``tag`` element under ``parent`` with one text element per keyword, in their order."""
    node = ET.SubElement(parent, tag)
    for name, value in children.items():
        ET.SubElement(node, name).text = str(value)
    return node


def _voc_xml(file_id, size, objects):
    ann = ET.Element("annotation")
    ET.SubElement(ann, "filename").text = f"{file_id}.jpg"
    _xml_node(ann, "size", width=size, height=size, depth=3)
    for (x0, y0, x1, y1), label, _ in objects:
        obj = _xml_node(ann, "object", name=CLASS_NAMES[label], pose="Unspecified", truncated=0, difficult=0)
        # VOC boxes are 1-based inclusive pixel indices; Detectron2's loader subtracts 1.
        _xml_node(obj, "bndbox", xmin=x0 + 1, ymin=y0 + 1, xmax=x1, ymax=y1)
    return ET.ElementTree(ann)


# The parameters a dataset is made with (recorded in its ``.complete`` marker) and their defaults.
DEFAULTS = {
    "num_train": 300, "num_val": 100, "image_size": 128, "max_objects": 4, "min_scale": 20, "max_scale": 48, "seed": 0
}
MIN_SCALE = 8  # the scans' own 8x8: a digit drawn smaller loses its strokes


def _file_ids(params):
    """(split, image id, file name without extension) of each image of a dataset made with ``params``, in the order
    they are drawn (the ids count on from one split to the next)."""
    splits = [split for split in SPLITS for _ in range(params[f"num_{split}"])]
    return [(split, image_id, f"{split}_{image_id:05d}") for image_id, split in enumerate(splits, start=1)]


def _option(name):
    return "--" + name.replace("_", "-")


def _validated(params):
    for name in ("num_train", "num_val", "max_objects"):
        if params[name] < 1:
            raise ConfigError(f"{_option(name)} {params[name]} is invalid: give 1 or more")
    lo, hi, size = params["min_scale"], params["max_scale"], params["image_size"]
    if not MIN_SCALE <= lo <= hi <= size:
        raise ConfigError(f"--min-scale {lo}, --max-scale {hi}, --image-size {size} are invalid: digits are drawn "
                          f"{lo} to {hi} pixels tall on {size}x{size} images, so give {MIN_SCALE} <= --min-scale <= "
                          f"--max-scale <= --image-size (e.g. --image-size 64 --min-scale 12 --max-scale 24)")
    return params


def generate_digits_dataset(root, *, overwrite=False, **requested):
    """Write the dataset under ``root`` made with ``requested`` parameters (keywords of
    :data:`DEFAULTS`; None or absent: the default); return ``root``.

    Deterministic for given parameters. Written into a temporary folder beside ``root`` and
    moved into place at the end, so an interrupted run never leaves a half dataset that
    looks complete. An existing complete dataset is kept when it agrees with every
    requested parameter; one made with others is refused (InputError, naming them) unless
    ``overwrite``, which regenerates it.

    Nothing this function did not write is ever deleted: ``root`` must be missing, empty,
    or a dataset it wrote itself (its ``.complete`` marker and exactly the files it
    records); anything else is refused with an InputError, files untouched.
    """
    unknown = set(requested) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"generate_digits_dataset() got unknown parameters {sorted(unknown)}")
    requested = {k: v for k, v in requested.items() if v is not None}
    root = os.path.abspath(root)
    recorded = _recorded_parameters(root)
    keep = recorded is not None and recorded.get("format") == FORMAT_VERSION and not overwrite
    params = _validated({**(recorded if keep else DEFAULTS), **requested})
    if keep:
        differ = [f"{_option(k)} {v} (the dataset: {recorded[k]})" for k, v in requested.items() if recorded[k] != v]
        if differ:
            raise InputError(f"{root} holds a digits dataset made with other parameters: {'; '.join(differ)}. Pass "
                             "--overwrite to regenerate it, or choose another --root")
        return root
    _check_replaceable(root, recorded)
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".rgs_digits_", dir=parent)
    try:
        for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main"), "annotations"):
            os.makedirs(os.path.join(tmp, sub))
        digits, labels = _digit_images()
        rng = np.random.default_rng(params["seed"])
        size = params["image_size"]
        categories = [{"id": i + 1, "name": n} for i, n in enumerate(CLASS_NAMES)]
        coco = {split: {"images": [], "annotations": [], "categories": categories} for split in SPLITS}
        ann_ids = itertools.count(1)
        for split, image_id, file_id in _file_ids(params):
            img, objects = _render(rng, digits, labels, params)
            img.save(os.path.join(tmp, "JPEGImages", f"{file_id}.jpg"), quality=95)
            _voc_xml(file_id, size, objects).write(os.path.join(tmp, "Annotations", f"{file_id}.xml"))
            coco[split]["images"].append({"id": image_id, "file_name": f"{file_id}.jpg", "width": size, "height": size})
            for (x0, y0, x1, y1), label, polygon in objects:  # polygon: a list of polygons
                w, h = x1 - x0, y1 - y0
                coco[split]["annotations"].append({
                    "id": next(ann_ids),
                    "image_id": image_id,
                    "category_id": label + 1,
                    "bbox": [x0, y0, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "segmentation": polygon,
                })
        for split in SPLITS:
            ids = [file_id for s, _, file_id in _file_ids(params) if s == split]
            Path(tmp, "ImageSets", "Main", f"{split}.txt").write_text("\n".join(ids) + "\n")
            Path(tmp, "annotations", f"instances_{split}.json").write_text(json.dumps(coco[split]))
        Path(tmp, _DONE_MARK).write_text(json.dumps({"format": FORMAT_VERSION, **params}))
        if os.path.exists(root) and os.listdir(root):
            shutil.rmtree(root)  # ours: _check_replaceable said so
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _recorded_parameters(root):
    """The parameters in ``root``'s ``.complete`` marker (older markers lack some: they were the defaults),
    or None when it has none."""
    try:
        with open(os.path.join(root, _DONE_MARK)) as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return None
    return {**DEFAULTS, **recorded} if isinstance(recorded, dict) else None


def _own_files(recorded):
    """What a dataset with the ``recorded`` parameters consists of (paths relative to its root)."""
    own = {_DONE_MARK, "JPEGImages", "Annotations", "ImageSets", os.path.join("ImageSets", "Main"), "annotations"}
    if recorded is None:
        return own
    own |= {os.path.join("ImageSets", "Main", f"{split}.txt") for split in SPLITS}
    own |= {os.path.join("annotations", f"instances_{split}.json") for split in SPLITS}
    for _, _, file_id in _file_ids(recorded):
        own |= {os.path.join("JPEGImages", f"{file_id}.jpg"), os.path.join("Annotations", f"{file_id}.xml")}
    return own


def _check_replaceable(root, recorded):
    if not os.path.exists(root):
        return
    if not os.path.isdir(root):
        raise InputError(f"{root} exists and is not a folder; choose another place for the digits dataset")
    found = {
        os.path.relpath(os.path.join(folder, name), root) for folder, dirs, files in os.walk(root)
        for name in dirs + files
    }
    foreign = sorted(found - _own_files(recorded))
    if found and (recorded is None or foreign):
        raise InputError(f"{root} is not empty and is not a digits dataset written by this tool (no {_DONE_MARK} "
                         f"marker, or files it did not write: {', '.join(foreign[:5]) or 'none'}); nothing was "
                         "changed. Move those files away, or give an empty or new folder (the default is "
                         "$DETECTRON2_DATASETS/rgs_digits).")
