"""A modern recipe with an RGSNet: Detectron2's ``new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py``
(Mask R-CNN FPN, large-scale jitter, SyncBN, trained from scratch for 100 epochs of COCO 2017
at batch 64) with its ResNet-50 replaced by Res-RGS-50. Not an experiment of the paper.

From scratch, Res-RGS starts with its RG shortcut's GroupNorm weight at 0 in identity blocks
(``rg_init="zero"``): with ``rg_init="paper"`` (weight 1, our reading) res4's output starts at a standard
deviation of 6.7 (2.6 with the zero start, 1.4 for b-RGS; docs/ARCHITECTURE.md, "Activation
growth"), and in our study (docs/RESULTS.md, "Res-RGS from scratch") the zero start halved the
first epoch's loss and ended ahead in every seed. The other variants have no such term and
take ``rg_init="paper"``:

    python -m rgs_detectron.cli.lazy_train_net --config-file configs/lazy/mask_rcnn_res_rgs_50_fpn_100ep_lsj.py \\
        --num-gpus 8 rgsnet.variant=b-RGS rgsnet.rg_init=paper
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from rgs_detectron.modeling import RGSNet, RGSNetSpec

_baseline = model_zoo.get_config("new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py")
model, dataloader, optimizer, lr_multiplier, train = (
    _baseline[k] for k in ("model", "dataloader", "optimizer", "lr_multiplier", "train"))

rgsnet = L(RGSNetSpec.create)(variant="Res-RGS", depth=50, norm="SyncBN", rg_init="zero")
model.backbone.bottom_up = L(RGSNet)(spec="${rgsnet}", out_features=["res2", "res3", "res4", "res5"], freeze_at=0)
train.output_dir = "output/lazy/mask_rcnn_res_rgs_50_fpn_100ep_lsj"
train.invalid_boxes = "drop"  # or "fail": training boxes that cannot be right (rgs_detectron/data/boxes.py)
