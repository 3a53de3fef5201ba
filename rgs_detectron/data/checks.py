"""Fail before training when a dataset file the config needs is missing.

Detectron2 only finds a missing annotation file when the data loader first opens it,
often after the model is built, and with a bare ``FileNotFoundError``. Here every
dataset in ``DATASETS.TRAIN``/``DATASETS.TEST`` is checked up front, and the message
says how to get the file.
"""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog


def _how_to_get(name, path):
    base = os.path.basename(path)
    if base in ("instances_minival2014.json", "instances_valminusminival2014.json"):
        return (
            "these two files are not in the official COCO download; make them from "
            "instances_val2014.json with: python tools/make_coco_minival.py "
            "--val2014 datasets/coco/annotations/instances_val2014.json "
            "[--val2017 datasets/coco/annotations/instances_val2017.json]"
        )
    if name.startswith("coco_"):
        return (
            "download COCO 2014 (train2014.zip, val2014.zip, annotations_trainval2014.zip) from "
            "cocodataset.org and unpack under $DETECTRON2_DATASETS/coco (see the README, 'Datasets')"
        )
    if name.startswith("voc_"):
        return (
            "download VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar and unpack so that "
            "$DETECTRON2_DATASETS/VOC2007/{Annotations,ImageSets,JPEGImages} exist (see the README, 'Datasets')"
        )
    if name.startswith("rgs_digits"):
        return "generate the built-in dataset with: python tools/make_digits_dataset.py (or run the README's demo command)"
    return "check the path the dataset was registered with"


def dataset_files(name):
    """The files and folders dataset ``name`` reads, from its registered metadata."""
    meta = MetadataCatalog.get(name)
    paths = []
    if hasattr(meta, "json_file"):
        paths += [meta.json_file, meta.image_root]
    elif hasattr(meta, "dirname"):
        paths += [
            os.path.join(meta.dirname, "ImageSets", "Main", f"{meta.split}.txt"),
            os.path.join(meta.dirname, "Annotations"),
            os.path.join(meta.dirname, "JPEGImages"),
        ]
    return paths


def check_dataset_files(dataset_names):
    """Raise ``FileNotFoundError`` naming every missing file and how to get it."""
    problems = []
    for name in dataset_names:
        if name not in DatasetCatalog.list():
            problems.append(
                f"dataset '{name}' is not registered; registered names include "
                + ", ".join(sorted(n for n in DatasetCatalog.list() if n.startswith(("coco_2014", "voc_2007", "rgs_"))))
            )
            continue
        for path in dataset_files(name):
            if not os.path.exists(path):
                problems.append(f"dataset '{name}' needs {path}, which does not exist: {_how_to_get(name, path)}")
    if problems:
        raise FileNotFoundError(
            "missing dataset files (set $DETECTRON2_DATASETS to the folder that holds the datasets; "
            f"now '{os.getenv('DETECTRON2_DATASETS', 'datasets')}'):\n  - " + "\n  - ".join(problems)
        )
