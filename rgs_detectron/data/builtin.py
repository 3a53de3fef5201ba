"""Registers the built-in digits dataset under Detectron2's catalogs.

Names: ``rgs_digits_{train,val}`` (COCO-JSON, COCO evaluator) and
``rgs_digits_voc_{train,val}`` (VOC tree, VOC evaluator, 11-point 2007 metric). The
root is ``$DETECTRON2_DATASETS/rgs_digits`` (default ``datasets/rgs_digits``), read when
this module is imported, as Detectron2 does for its own builtin datasets.
"""
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances, register_pascal_voc

from .digits import CLASS_NAMES, SPLITS

DIGITS_DIRNAME = "rgs_digits"


def digits_root(datasets_root=None):
    return os.path.join(datasets_root or os.getenv("DETECTRON2_DATASETS", "datasets"), DIGITS_DIRNAME)


def register_digits(datasets_root=None, prefix="rgs_digits"):
    """Register the COCO and VOC views of the digits dataset found under ``datasets_root`` (with Detectron2's own
    registration functions, as its builtin COCO and VOC sets are; names already registered are left as they are)."""
    root = digits_root(datasets_root)
    for split in SPLITS:
        coco, voc = f"{prefix}_{split}", f"{prefix}_voc_{split}"
        if coco not in DatasetCatalog.list():
            register_coco_instances(coco, {"thing_classes": list(CLASS_NAMES)},
                                    os.path.join(root, "annotations", f"instances_{split}.json"),
                                    os.path.join(root, "JPEGImages"))
        if voc not in DatasetCatalog.list():
            register_pascal_voc(voc, root, split, 2007, CLASS_NAMES)
            MetadataCatalog.get(voc).evaluator_type = "pascal_voc"


register_digits()
