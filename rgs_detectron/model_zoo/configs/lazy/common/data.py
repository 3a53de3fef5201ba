"""Dataloaders for the COCO and VOC experiments (the paper, Sec. 4.3), from Detectron2's
``common/data/coco.py``.

Images are read with ``RGSDatasetMapper`` (16-bit PNGs scaled, unreadable files named) in
RGB order, boxes only. Our splits (docs/ARCHITECTURE.md, "Settings"): COCO 2014 as in
Detectron, train2014 + valminusminival2014, test on the 5k minival2014; VOC 2007 trainval /
test with the 11-point VOC07 metric.
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.evaluation import PascalVOCDetectionEvaluator

from rgs_detectron.data.mapper import RGSDatasetMapper
from rgs_detectron.engine.evaluation import RGSCOCOEvaluator


def _rgs_mappers(dataloader):
    for split in ("train", "test"):
        mapper = dict(dataloader[split].mapper)
        mapper.pop("_target_")
        mapper["image_format"] = "RGB"  # both splits: what torchvision-style weights (and the model config) expect
        dataloader[split].mapper = L(RGSDatasetMapper)(**mapper)
    dataloader.train.mapper.use_instance_mask = False
    return dataloader


coco2014 = _rgs_mappers(model_zoo.get_config("common/data/coco.py").dataloader)
coco2014.train.dataset.names = ("coco_2014_train", "coco_2014_valminusminival")
coco2014.test.dataset.names = "coco_2014_minival"
coco2014.evaluator = L(RGSCOCOEvaluator)(dataset_name="${..test.dataset.names}", engine="auto")

voc2007 = _rgs_mappers(model_zoo.get_config("common/data/coco.py").dataloader)
voc2007.train.dataset.names = "voc_2007_trainval"
voc2007.train.mapper.augmentations[0].short_edge_length = (480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800)
voc2007.test.dataset.names = "voc_2007_test"
voc2007.evaluator = L(PascalVOCDetectionEvaluator)(dataset_name="${..test.dataset.names}")
