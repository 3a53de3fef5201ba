"""Faster R-CNN FPN with an RGSNet backbone: Detectron2's ``common/models/mask_rcnn_fpn.py``
without its mask head, the bottom-up network swapped for ``RGSNet``.

The network is described once, by the top-level ``rgsnet`` node (``RGSNetSpec.create``'s
keywords); override it on the command line, e.g. ``rgsnet.variant=b-RGS rgsnet.depth=101``.
Input settings are those torchvision-style ImageNet weights need (RGB, ImageNet mean/std).
The heads' input shapes are LazyCalls, not ``ShapeSpec`` objects, so that the ``config.yaml`` a
run saves is plain data that ``lazy_train_net`` can read back (a Python object would need a
``!!python`` tag, which is refused).
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from rgs_detectron.modeling import RGSNet, RGSNetSpec

rgsnet = L(RGSNetSpec.create)(variant="Res-RGS", depth=50, width_mult=1.0, norm="FrozenBN")

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up = L(RGSNet)(spec="${rgsnet}", out_features=["res2", "res3", "res4", "res5"], freeze_at=2)
model.roi_heads.mask_in_features = None
model.roi_heads.mask_pooler = None
model.roi_heads.mask_head = None
model.roi_heads.box_head.input_shape = L(ShapeSpec)(channels=256, height=7, width=7)
model.roi_heads.box_predictor.input_shape = L(ShapeSpec)(channels=1024)
model.input_format = "RGB"
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]
