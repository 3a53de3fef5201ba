"""Res-RGS-50 Faster R-CNN C4, COCO 2014 (train2014 + valminusminival2014 -> minival2014), 5 epochs: the paper's experiment as a LazyConfig.

    python -m rgs_detectron.cli.lazy_train_net --config-file configs/lazy/coco_res_rgs_50_c4.py --num-gpus 8
    ... rgsnet.variant=b-RGS train.init_checkpoint=checkpoints/imagenet/b_rgs_50.pth   # another variant
"""
from detectron2 import model_zoo

from .common.data import coco2014 as dataloader
from .common.rgsnet_faster_rcnn_c4 import model, rgsnet  # noqa: F401  (rgsnet: the backbone's description)
from .common.schedules import coco_5ep as lr_multiplier
from .common.schedules import optimizer  # noqa: F401

train = model_zoo.get_config("common/train.py").train
train.max_iter = 36646
train.checkpointer.period = 5000
train.eval_period = 0  # evaluate once, at the end
# Converted ImageNet weights (README, "Pretraining and converting"), relative to the directory you run from.
train.init_checkpoint = "checkpoints/imagenet/res_rgs_50.pth"
train.output_dir = "output/lazy/coco_res_rgs_50_c4"
