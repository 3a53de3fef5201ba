"""Split COCO val2014 into the 5k ``minival2014`` and ``valminusminival2014``.

Detectron's split: minival2014 is the 5,000 val2014 images that became val2017, the
rest (35,504) is valminusminival2014. Given ``instances_val2017.json`` the split is
exactly that (matched by image id, which COCO kept between the two releases).

Without val2017, the split is deterministic but not canonical: the val2014 image ids
are sorted and ``size`` are drawn with ``numpy.random.default_rng(2014)``. Numbers on
such a split are not comparable with published minival numbers; the output says so.
"""
import json
import os

import numpy as np

from ..errors import ConfigError, InputError, first_line
from ..utils.fileio import atomic_write

MINIVAL_NAME = "instances_minival2014.json"
VALMINUS_NAME = "instances_valminusminival2014.json"


def _load(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{what} '{path}' does not exist (COCO annotations_trainval2014.zip / 2017.zip)") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{what} '{path}' cannot be read: {first_line(e)}") from None


def _subset(data, image_ids):
    keep = set(image_ids)
    return {
        **data, "images": [im for im in data["images"] if im["id"] in keep],
        "annotations": [a for a in data.get("annotations", []) if a["image_id"] in keep]
    }


def write_minival_split(val2014_json, val2017_json=None, output_dir=None, size=5000, overwrite=False):
    """Write the two files; return a summary dict. Refuses to overwrite unless asked (a ConfigError); an input that
    cannot be read or split is an InputError."""
    output_dir = output_dir or os.path.dirname(os.path.abspath(val2014_json))
    outputs = [os.path.join(output_dir, n) for n in (MINIVAL_NAME, VALMINUS_NAME)]
    existing = [p for p in outputs if os.path.exists(p)]
    if existing and not overwrite:
        raise ConfigError(f"{', '.join(existing)} already exist; pass --overwrite to replace them")

    val2014 = _load(val2014_json, "val2014 annotations")
    ids2014 = sorted(im["id"] for im in val2014["images"])
    if val2017_json:
        ids2017 = {im["id"] for im in _load(val2017_json, "val2017 annotations")["images"]}
        minival = sorted(i for i in ids2014 if i in ids2017)
        if len(minival) != len(ids2017):
            raise InputError(f"{len(ids2017) - len(minival)} val2017 images are not in val2014; "
                             "are these the official instances_val2014.json and instances_val2017.json?")
        method = "canonical (val2017 image set)"
    else:
        if size > len(ids2014):
            raise ConfigError(f"--size {size} is larger than val2014 ({len(ids2014)} images)")
        rng = np.random.default_rng(2014)
        minival = sorted(np.asarray(ids2014)[rng.choice(len(ids2014), size=size, replace=False)].tolist())
        method = "deterministic (seed 2014), NOT the canonical Detectron split: pass --val2017 for that"
    minival_set = set(minival)
    rest = [i for i in ids2014 if i not in minival_set]
    # The two parts are disjoint and cover val2014 by construction; check it anyway.
    if minival_set & set(rest) or len(minival) + len(rest) != len(ids2014):
        raise AssertionError("minival and valminusminival do not partition val2014")

    os.makedirs(output_dir, exist_ok=True)
    for path, ids in zip(outputs, (minival, rest)):
        data = _subset(val2014, ids)
        atomic_write(path, lambda f, d=data: json.dump(d, f), mode="w")
    return {
        "method": method, "minival2014 images": len(minival), "valminusminival2014 images": len(rest),
        "written": ", ".join(outputs)
    }
