"""Faster R-CNN C4 with an RGSNet: Detectron2's ``common/models/mask_rcnn_c4.py`` without its
mask head; res2-res4 in the backbone and res5 in the ROI head, both from the one ``rgsnet``
node (override it, e.g. ``rgsnet.variant=b-RGS``). RPN and box-predictor widths follow it.
Input settings are those torchvision-style ImageNet weights need (RGB, ImageNet mean/std).
"""
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from rgs_detectron.modeling import RGSNet, RGSNetSpec, make_rgsnet_res5, stage_channels

rgsnet = L(RGSNetSpec.create)(variant="Res-RGS", depth=50, width_mult=1.0, norm="FrozenBN")

model = model_zoo.get_config("common/models/mask_rcnn_c4.py").model
model.backbone = L(RGSNet)(spec="${rgsnet}", out_features=["res4"], freeze_at=2)
model.proposal_generator.head.in_channels = L(stage_channels)(spec="${rgsnet}", stage="res4")
model.roi_heads.res5 = L(make_rgsnet_res5)(spec="${rgsnet}")
model.roi_heads.box_predictor.input_shape.channels = L(stage_channels)(spec="${rgsnet}", stage="res5")
model.roi_heads.mask_head = None
model.input_format = "RGB"
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]
