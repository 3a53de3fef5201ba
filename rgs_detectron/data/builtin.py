"""Registers the built-in digits dataset under Detectron2's catalogs.

Names: ``rgs_digits_{train,val}`` (COCO-JSON, COCO evaluator) and
``rgs_digits_voc_{train,val}`` (VOC tree, VOC evaluator, 11-point 2007 metric). The
root is ``$DETECTRON2_DATASETS/rgs_digits`` (default ``datasets/rgs_digits``), read when
this module is imported, as Detectron2 does for its own builtin datasets.
"""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.pascal_voc import load_voc_instances

from .digits import CLASS_NAMES, SPLITS

DIGITS_DIRNAME = "rgs_digits"


def digits_root(datasets_root=None):
    return os.path.join(datasets_root or os.getenv("DETECTRON2_DATASETS", "datasets"), DIGITS_DIRNAME)


def register_digits(datasets_root=None, prefix="rgs_digits"):
    """Register the COCO and VOC views of the digits dataset found under ``datasets_root``."""
    root = digits_root(datasets_root)
    image_root = os.path.join(root, "JPEGImages")
    for split in SPLITS:
        name = f"{prefix}_{split}"
        json_file = os.path.join(root, "annotations", f"instances_{split}.json")
        if name not in DatasetCatalog.list():
            DatasetCatalog.register(name, lambda j=json_file, n=name: load_coco_json(j, image_root, n))
            MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco",
                                          thing_classes=list(CLASS_NAMES), builtin_generator="digits")
        voc_name = f"{prefix}_voc_{split}"
        if voc_name not in DatasetCatalog.list():
            DatasetCatalog.register(voc_name, lambda s=split: load_voc_instances(root, s, CLASS_NAMES))
            MetadataCatalog.get(voc_name).set(thing_classes=list(CLASS_NAMES), dirname=root, year=2007, split=split,
                                              evaluator_type="pascal_voc", builtin_generator="digits")


register_digits()
