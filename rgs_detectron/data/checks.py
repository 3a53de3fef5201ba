"""Fail before training when a dataset file the config needs is missing or malformed.

Detectron2 finds a missing annotation file only when the data loader first opens it,
and a corrupt one with a bare ``JSONDecodeError`` that names no file; for the test set
that happens after training has finished. Here every dataset in ``DATASETS.TRAIN`` and
``DATASETS.TEST`` is checked up front: its files exist, and annotation files parse. The
message names the file and says how to get or fix it.
"""
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..errors import InputError

__all__ = ["check_dataset_files", "dataset_files"]


def _how_to_get(name, path):
    if os.path.basename(path) in ("instances_minival2014.json", "instances_valminusminival2014.json"):
        annotations = os.path.dirname(path)  # where the split is wanted, wherever $DETECTRON2_DATASETS points
        return ("these two files are not in the official COCO download; make them from instances_val2014.json with: "
                "python -m rgs_detectron.cli.make_coco_minival --val2014 "
                f"{os.path.join(annotations, 'instances_val2014.json')} "
                f"[--val2017 {os.path.join(annotations, 'instances_val2017.json')}]")
    if name.startswith("coco_"):
        return ("download COCO 2014 (train2014.zip, val2014.zip, annotations_trainval2014.zip) from "
                "cocodataset.org and unpack under $DETECTRON2_DATASETS/coco (docs/TRAINING.md, 'Datasets')")
    if name.startswith("voc_"):
        return ("download VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar and unpack so that "
                "$DETECTRON2_DATASETS/VOC2007/{Annotations,ImageSets,JPEGImages} exist (docs/TRAINING.md, 'Datasets')")
    if name.startswith("rgs_digits"):
        return "generate the built-in dataset with: python -m rgs_detectron.cli.make_digits (or run `make demo`)"
    return "check the path the dataset was registered with"


def dataset_files(name):
    """The files and folders dataset ``name`` reads, from its registered metadata."""
    meta = MetadataCatalog.get(name)
    if hasattr(meta, "json_file"):
        return [meta.json_file, meta.image_root]
    if hasattr(meta, "dirname"):
        parts = (("ImageSets", "Main", f"{meta.split}.txt"), ("Annotations", ), ("JPEGImages", ))
        return [os.path.join(meta.dirname, *part) for part in parts]
    return []


def _parse_problem(name, path):
    """Why an annotation file of ``name`` cannot be used, or None."""
    meta = MetadataCatalog.get(name)
    if hasattr(meta, "json_file") and path == meta.json_file:
        try:
            with open(path) as f:
                data = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            return f"{path} is not valid JSON ({e}); re-download or regenerate it"
        missing = [k for k in ("images", "annotations", "categories") if not isinstance(data, dict) or k not in data]
        if missing:
            return f"{path} is not a COCO annotation file: it has no {', '.join(missing)}"
    elif hasattr(meta, "dirname") and path.endswith(f"{meta.split}.txt"):
        for file_id in Path(path).read_text().split():  # one image id a line
            xml = os.path.join(meta.dirname, "Annotations", file_id + ".xml")
            try:
                ET.parse(xml)
            except (OSError, ET.ParseError) as e:
                return f"{xml} (listed in {path}) cannot be read as VOC XML ({e})"
    return None


def check_dataset_files(dataset_names, parse=True):
    """Raise ``InputError`` naming every missing (and, with ``parse``, unreadable) file and the fix.

    ``parse``: True (parse the annotation files of every dataset), False (none), or the names of
    the datasets whose annotation files to parse.
    """
    problems = []
    for name in dataset_names:
        if name not in DatasetCatalog.list():
            known = sorted(n for n in DatasetCatalog.list() if n.startswith(("coco_2014", "voc_2007", "rgs_")))
            problems.append(f"dataset '{name}' is not registered; registered names include {', '.join(known)}")
            continue
        for path in dataset_files(name):
            if not os.path.exists(path):
                problems.append(f"dataset '{name}' needs {path}, which does not exist: {_how_to_get(name, path)}")
            elif (parse is True or (parse and name in parse)) and os.path.isfile(path):
                problem = _parse_problem(name, path)
                if problem:
                    problems.append(f"dataset '{name}': {problem}")
    if problems:
        raise InputError("dataset files missing or unusable (datasets are found under $DETECTRON2_DATASETS, now "
                         f"'{os.getenv('DETECTRON2_DATASETS', 'datasets')}'):\n  - " + "\n  - ".join(problems))
