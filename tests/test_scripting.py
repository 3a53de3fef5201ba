"""``torch.jit.script``: every variant's backbone, and whole detectors as Detectron2 scripts its own.

Detectron2 scripts a detector with ``detectron2.export.scripting_with_instances`` (its
``Instances`` need declared fields; importing ``detectron2.export`` also lets Detectron2's
``ResNet``, and so ``RGSNet``, hold its stages as TorchScript wants); these tests do the same
for tiny RGSNet detectors with random weights and random BN statistics, in eval mode, and
compare with eager outputs.
"""
import pytest
import torch
from torch import Tensor

from detectron2.export import scripting_with_instances
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from detectron2.utils.testing import assert_instances_allclose

from rgs_detectron import VARIANTS
from rgs_detectron.modeling import RGSNet, build_rgsnet_backbone

from common import TINY_WIDTH, randomize_frozen_bn, rgs_cfg, tiny_batch, tiny_detector_cfg

ALL = ["res2", "res3", "res4", "res5"]
FIELDS = {
    "proposal_boxes": Boxes, "objectness_logits": Tensor, "pred_boxes": Boxes, "scores": Tensor, "pred_classes": Tensor
}
RETINANET = [
    "MODEL.META_ARCHITECTURE", "RetinaNet", "MODEL.BACKBONE.NAME",
    "build_retinanet_rgsnet_fpn_backbone", "MODEL.RESNETS.OUT_FEATURES", ["res3", "res4",
                                                                          "res5"], "MODEL.FPN.IN_FEATURES",
    ["res3", "res4", "res5"], "MODEL.RETINANET.NUM_CLASSES", 10, "MODEL.RETINANET.SCORE_THRESH_TEST", 0.0
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_backbone_scripts(variant):
    """SHORTCUT_IMPL lean: scripting must compile the reference ops, never the lean autograd function."""
    cfg = rgs_cfg("MODEL.RGSNET.VARIANT", variant, "MODEL.RGSNET.BLOCKS_PER_STAGE", [1, 2, 1, 1], *TINY_WIDTH,
                  "MODEL.RESNETS.OUT_FEATURES", ALL, "MODEL.RGSNET.SHORTCUT_IMPL", "lean")
    backbone = build_rgsnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    with torch.no_grad():
        randomize_frozen_bn(backbone)
    scripted = torch.jit.script(backbone)
    assert "Lean" not in str(scripted.inlined_graph)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        eager, out = backbone(x), scripted(x)
    for k in ALL:
        torch.testing.assert_close(out[k], eager[k], rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", ["Res-RGS", "Preact"])
def test_basic_block_backbone_scripts(variant):
    backbone = RGSNet(variant=variant, depth=18, width_mult=0.25, norm="FrozenBN", out_features=ALL).eval()
    with torch.no_grad():
        randomize_frozen_bn(backbone)
    scripted = torch.jit.script(backbone)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x)["res5"], backbone(x)["res5"], rtol=0, atol=1e-5)


def _random_detector(variant, head, *opts):
    torch.manual_seed(0)
    model = build_model(tiny_detector_cfg(variant, head, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, *opts)).eval()
    with torch.no_grad():
        randomize_frozen_bn(model)
    return model


@pytest.mark.parametrize("variant,head", [("Res-RGS", "FPN"), ("b-RGS", "C4")])
def test_faster_rcnn_scripts_and_matches_eager(variant, head):
    model = _random_detector(variant, head)
    scripted = scripting_with_instances(model, FIELDS)
    images = [tiny_batch(1, size=96, seed=1)[0]["image"], tiny_batch(1, size=64, seed=2)[0]["image"]]
    inputs = [{"image": images[0]}, {"image": images[1][:, :, :56]}]  # two sizes in one batch
    with torch.no_grad():
        eager = model.inference(inputs, do_postprocess=False)
        got = scripted.inference(inputs, do_postprocess=False)
    for e, g in zip(eager, got):
        assert len(e) > 0
        assert_instances_allclose(e, g, rtol=1e-4, size_as_tensor=True)


def test_retinanet_scripts_and_matches_eager():
    model = _random_detector("original", "FPN", *RETINANET)
    scripted = scripting_with_instances(model, {"pred_boxes": Boxes, "scores": Tensor, "pred_classes": Tensor})
    image = tiny_batch(1, size=96, seed=1)[0]["image"]
    with torch.no_grad():
        eager = model([{"image": image}])[0]["instances"]
        got = scripted([{"image": image}])[0]
    assert len(eager) > 0
    torch.testing.assert_close(got.pred_boxes.tensor, eager.pred_boxes.tensor, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(got.scores, eager.scores, rtol=1e-4, atol=1e-5)
    assert torch.equal(got.pred_classes, eager.pred_classes)
