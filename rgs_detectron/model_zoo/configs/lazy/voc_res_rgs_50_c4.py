"""Res-RGS-50 Faster R-CNN C4, VOC 2007 (trainval -> test), 10 epochs:
the paper's VOC experiment (Sec. 4.3) as a LazyConfig; the test split and settings are our choice
(docs/ARCHITECTURE.md, "Settings").

    python -m rgs_detectron.cli.lazy_train_net --config-file configs/lazy/voc_res_rgs_50_c4.py --num-gpus 8
    ... rgsnet.variant=b-RGS train.init_checkpoint=checkpoints/imagenet/b_rgs_50.pth   # another variant
"""
from .common.data import voc2007 as dataloader
from .common.rgsnet_faster_rcnn_c4 import model, rgsnet  # noqa: F401  (rgsnet: the backbone's description)
from .common.schedules import optimizer  # noqa: F401
from .common.schedules import voc_10ep as lr_multiplier  # noqa: F401
from .common.schedules import voc_10ep_train as train

model.roi_heads.num_classes = 20

train.output_dir = "output/lazy/voc_res_rgs_50_c4"
