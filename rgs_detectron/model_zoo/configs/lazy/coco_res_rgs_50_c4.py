"""Res-RGS-50 Faster R-CNN C4, COCO 2014 (train2014 + valminusminival2014 -> minival2014), 5 epochs:
the paper's COCO experiment (Sec. 4.3) as a LazyConfig; its splits and settings are our choice
(docs/ARCHITECTURE.md, "Settings").

    python -m rgs_detectron.cli.lazy_train_net --config-file configs/lazy/coco_res_rgs_50_c4.py --num-gpus 8
    ... rgsnet.variant=b-RGS train.init_checkpoint=checkpoints/imagenet/b_rgs_50.pth   # another variant
"""
from .common.data import coco2014 as dataloader
from .common.rgsnet_faster_rcnn_c4 import model, rgsnet  # noqa: F401  (rgsnet: the backbone's description)
from .common.schedules import coco_5ep as lr_multiplier  # noqa: F401
from .common.schedules import coco_5ep_train as train
from .common.schedules import optimizer  # noqa: F401

train.output_dir = "output/lazy/coco_res_rgs_50_c4"
