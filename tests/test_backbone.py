"""The backbones: parity with Detectron2's ResNet, every variant and builder, bad configs."""
import pytest
import torch

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.modeling.backbone.resnet import build_resnet_backbone
from detectron2.utils.events import EventStorage

from rgs_detectron import VARIANTS
from rgs_detectron.errors import ConfigError
from rgs_detectron.model_zoo import get_config_file
from rgs_detectron.modeling import RGSNet, RGSNetSpec, build_rgsnet_backbone
from rgs_detectron.modeling.spec_record import RECORD_KEY

from common import TINY_WIDTH, randomize_frozen_bn, rgs_cfg, tiny_batch, tiny_detector_cfg

ALL = ["res2", "res3", "res4", "res5"]


@pytest.mark.parametrize("depth,stride_in_1x1", [(50, True), (50, False), (101, True), (101, False), (18, False),
                                                 (34, False)])
def test_original_matches_detectron2_resnet(depth, stride_in_1x1):
    """Depths 18 and 34 are basic blocks; Detectron2 requires RES2_OUT_CHANNELS 64 there."""
    cfg = rgs_cfg("MODEL.RESNETS.DEPTH", depth, "MODEL.RESNETS.STRIDE_IN_1X1", stride_in_1x1,
                  "MODEL.RESNETS.RES2_OUT_CHANNELS", 64 if depth in (18, 34) else 256, "MODEL.RESNETS.OUT_FEATURES",
                  ALL, "MODEL.RGSNET.VARIANT", "original")
    theirs = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    ours = build_rgsnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    assert list(ours.state_dict()) == [RECORD_KEY] + list(theirs.state_dict())  # its record, then the same tensors
    with torch.no_grad():
        randomize_frozen_bn(theirs)
        ours.load_state_dict(theirs.state_dict())  # strict: a state dict without a record loads
        x = torch.randn(2, 3, 96, 128)
        a, b = theirs(x), ours(x)
    for k in ALL:
        assert (a[k] - b[k]).abs().max().item() <= 1e-6, k


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
@pytest.mark.parametrize("out_features", [["res4"], ALL])
def test_original_backbone_draws_detectron2s_initial_weights(depth, out_features):
    """Under one seed, ``original`` starts from Detectron2's very weights (any depth, bottleneck and basic),
    and leaves the random generator where Detectron2 leaves it (res5 is drawn even when only res4 is kept)."""
    basic = ["MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.RESNETS.STRIDE_IN_1X1", False]  # as Detectron2 R18/R34
    width = basic if depth in (18, 34) else TINY_WIDTH
    cfg = rgs_cfg("MODEL.RESNETS.DEPTH", depth, *width, "MODEL.RESNETS.OUT_FEATURES", out_features,
                  "MODEL.RGSNET.VARIANT", "original")
    states, next_draws = [], []
    for build in (build_resnet_backbone, build_rgsnet_backbone):
        torch.manual_seed(0)
        states.append(build(cfg, ShapeSpec(channels=3)).state_dict())
        next_draws.append(torch.rand(4))
    assert list(states[1]) == [RECORD_KEY] + list(states[0])  # its record, then the same tensors
    assert [k for k, v in states[0].items() if not torch.equal(v, states[1][k])] == []
    assert torch.equal(*next_draws)


@pytest.mark.parametrize("depth", [18, 26])
@pytest.mark.parametrize("se_reduction", [0, 4])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_draws_its_convs_as_original_does(variant, se_reduction, depth):
    """The convs a variant shares with ``original`` are drawn in the same order, then its own layers."""
    states = []
    for name in ("original", variant):
        torch.manual_seed(0)
        spec = RGSNetSpec.create(name, depth, 0.25, norm="BN", se_reduction=se_reduction)
        states.append(RGSNet(spec=spec, out_features=ALL).state_dict())
    convs = [k for k, v in states[0].items() if v.dim() == 4]
    assert len(convs) > 10 and [k for k in convs if not torch.equal(states[0][k], states[1][k])] == []


@pytest.mark.parametrize("head,detectron2_names", [("FPN", ("build_resnet_fpn_backbone", "StandardROIHeads")),
                                                   ("C4", ("build_resnet_backbone", "Res5ROIHeads"))])
def test_original_detector_draws_detectron2s_initial_weights(head, detectron2_names):
    """The shipped ``original`` detector and the same config on Detectron2's ResNet, each built under seed 0:
    every tensor equal, the RPN and the heads (drawn after the backbone, res5 head included) too."""
    ours = rgs_cfg(*TINY_WIDTH, base=get_config_file(f"coco_original_50{'_fpn' if head == 'FPN' else ''}.yaml"))
    theirs = ours.clone()
    theirs.MODEL.BACKBONE.NAME, theirs.MODEL.ROI_HEADS.NAME = detectron2_names
    states = []
    for cfg in (theirs, ours):
        torch.manual_seed(0)
        states.append(build_model(cfg).state_dict())
    records = [k for k in states[1] if k.endswith(RECORD_KEY)]  # the backbone's, and res5's in C4
    assert [k for k in states[1] if k not in records] == list(states[0]) and records
    assert [k for k, v in states[0].items() if not torch.equal(v, states[1][k])] == []


def _shape(backbone):
    return {k: (v.channels, v.stride) for k, v in backbone.output_shape().items()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_builder_has_detectron2_outputs(variant):
    common = ["MODEL.RGSNET.VARIANT", variant, "MODEL.RESNETS.DEPTH", 26, *TINY_WIDTH, "MODEL.FPN.OUT_CHANNELS", 32]
    x = torch.randn(1, 3, 128, 128)

    c4 = build_backbone(
        rgs_cfg(*common, "MODEL.RESNETS.OUT_FEATURES", ["res4"], "MODEL.BACKBONE.NAME", "build_rgsnet_backbone"))
    assert _shape(c4) == {"res4": (256, 16)}
    assert c4(x)["res4"].shape == (1, 256, 8, 8)

    bottom = build_backbone(
        rgs_cfg(*common, "MODEL.RESNETS.OUT_FEATURES", ALL, "MODEL.BACKBONE.NAME", "build_rgsnet_backbone"))
    assert _shape(bottom) == {"res2": (64, 4), "res3": (128, 8), "res4": (256, 16), "res5": (512, 32)}

    fpn = build_backbone(
        rgs_cfg(*common, "MODEL.RESNETS.OUT_FEATURES", ALL, "MODEL.FPN.IN_FEATURES", ALL, "MODEL.BACKBONE.NAME",
                "build_rgsnet_fpn_backbone"))
    assert _shape(fpn) == {f"p{i}": (32, 2**i) for i in range(2, 7)}
    out = fpn(x)
    assert {k: v.shape[-1] for k, v in out.items()} == {f"p{i}": 128 // 2**i for i in range(2, 7)}

    retina = build_backbone(
        rgs_cfg(*common, "MODEL.RESNETS.OUT_FEATURES", ["res3", "res4", "res5"], "MODEL.FPN.IN_FEATURES",
                ["res3", "res4", "res5"], "MODEL.BACKBONE.NAME", "build_retinanet_rgsnet_fpn_backbone"))
    assert _shape(retina) == {f"p{i}": (32, 2**i) for i in range(3, 8)}
    assert set(retina(x)) == {f"p{i}" for i in range(3, 8)}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("head", ["FPN", "C4"])
def test_faster_rcnn_forward_backward(variant, head):
    torch.manual_seed(0)
    model = build_model(tiny_detector_cfg(variant, head))
    model.train()
    with EventStorage():
        losses = model(tiny_batch())
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for n, p in model.named_parameters() if "backbone" in n or "res5" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    if head == "C4":
        assert type(model.roi_heads).__name__ == "RGSNetRes5ROIHeads"
    model.eval()
    with torch.no_grad():
        (pred, ) = model([{"image": tiny_batch(1)[0]["image"]}])
    assert "instances" in pred


@pytest.mark.parametrize("variant", ["original", "b-RGS", "Res-RGS"])
def test_a_few_sgd_steps_lower_the_loss(variant):
    torch.manual_seed(0)
    model = build_model(tiny_detector_cfg(variant, "FPN"))
    model.train()
    batch = tiny_batch(2, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)
    with EventStorage():
        history = _sgd_steps(model, batch, opt, 10)
    assert sum(history[-3:]) / 3 < 0.85 * history[0], history


def _sgd_steps(model, batch, opt, steps):
    history = []
    for _ in range(steps):
        torch.manual_seed(1)  # same proposal sampling every step: a fixed objective
        loss = sum(model(batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history


@pytest.mark.parametrize("variant", VARIANTS)
def test_trace_matches_eager(variant):
    cfg = rgs_cfg("MODEL.RGSNET.VARIANT", variant, "MODEL.RESNETS.DEPTH", 26, *TINY_WIDTH, "MODEL.RESNETS.OUT_FEATURES",
                  ALL, "MODEL.RGSNET.SHORTCUT_IMPL", "auto")
    backbone = build_rgsnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    with torch.no_grad():
        randomize_frozen_bn(backbone)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():  # FrozenBN picks its op by requires_grad: trace the inference path
        traced = torch.jit.trace(backbone, (x, ), strict=False, check_trace=False)
    with torch.no_grad():
        eager, out = backbone(x), traced(x)
    for k in ALL:
        torch.testing.assert_close(out[k], eager[k], rtol=0, atol=1e-6)


def test_freeze_at_freezes_gn_and_frozenbn_converts_only_bn():
    cfg = rgs_cfg("MODEL.RGSNET.VARIANT", "Res-RGS", "MODEL.RESNETS.DEPTH", 26, *TINY_WIDTH,
                  "MODEL.RESNETS.OUT_FEATURES", ALL, "MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", 3)
    backbone = build_rgsnet_backbone(cfg, ShapeSpec(channels=3))
    for name, p in backbone.named_parameters():
        frozen = name.startswith(("stem.", "res2.", "res3."))
        assert p.requires_grad != frozen, name
    frozen_stage = backbone.res2[1]
    assert isinstance(frozen_stage.conv1.norm, FrozenBatchNorm2d)
    assert type(frozen_stage.shortcut_norm).__name__ == "ReLUGroupNorm"
    assert not frozen_stage.shortcut_norm.weight.requires_grad
    assert isinstance(backbone.res4[1].conv1.norm, torch.nn.BatchNorm2d)


def _count(variant, *opts):
    cfg = rgs_cfg("MODEL.RGSNET.VARIANT", variant, "MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", 0,
                  "MODEL.RESNETS.STRIDE_IN_1X1", False, "MODEL.RESNETS.OUT_FEATURES", ALL, *opts)
    return sum(p.numel() for p in build_rgsnet_backbone(cfg, ShapeSpec(channels=3)).parameters())


def test_rg_adds_only_gn_affine_parameters():
    base = _count("original")
    assert base == 23_508_032  # torchvision resnet50 without fc (25,557,032 - 2,049,000)
    # b-RGS: one GN (2 x C) per identity block: 2 x (2*256 + 3*512 + 5*1024 + 2*2048)
    assert _count("b-RGS") - base == 22_528
    # Res-RGS adds the inner GN where the 3x3 conv has stride 1 (all but 3 blocks).
    assert _count("Res-RGS") - base == 22_528 + 2 * (3 * 64 + 3 * 128 + 5 * 256 + 2 * 512)
    assert _count("Res-RGS", "MODEL.RESNETS.STRIDE_IN_1X1",
                  True) - base == 22_528 + 2 * (3 * 64 + 4 * 128 + 6 * 256 + 3 * 512)
    assert _count("Res-RGS", "MODEL.RGSNET.SE_REDUCTION", 16) > _count("Res-RGS") + 2_000_000


@pytest.mark.parametrize("width,stem,res2,wpg,groups", [(0.25, 16, 64, 16, 8), (0.5, 32, 128, 32, 16),
                                                        (1, 64, 256, 64, 32), (2, 128, 512, 128, 64)])
def test_widths_scale_gn_groups(width, stem, res2, wpg, groups):
    cfg = rgs_cfg("MODEL.RESNETS.DEPTH", 26, "MODEL.RESNETS.STEM_OUT_CHANNELS", stem, "MODEL.RESNETS.RES2_OUT_CHANNELS",
                  res2, "MODEL.RESNETS.WIDTH_PER_GROUP", wpg, "MODEL.RESNETS.OUT_FEATURES", ["res2"])
    block = build_rgsnet_backbone(cfg, ShapeSpec(channels=3)).res2[1]
    assert block.shortcut_norm.num_groups == groups and block.inner_norm.num_groups == groups


def test_resnext_grouping():
    cfg = rgs_cfg("MODEL.RESNETS.DEPTH", 26, "MODEL.RESNETS.NUM_GROUPS", 32, "MODEL.RESNETS.WIDTH_PER_GROUP", 4,
                  "MODEL.RESNETS.OUT_FEATURES", ["res3"])
    backbone = build_rgsnet_backbone(cfg, ShapeSpec(channels=3))
    assert backbone.res2[0].conv2.groups == 32 and backbone.res2[0].conv2.out_channels == 128
    assert backbone(torch.randn(1, 3, 64, 64))["res3"].shape == (1, 512, 8, 8)


@pytest.mark.parametrize("depth,expected", [(26, [2, 2, 2, 2]), (38, [3, 3, 3, 3]), (200, [3, 24, 36, 3])])
def test_depth_table(depth, expected):
    cfg = rgs_cfg("MODEL.RESNETS.DEPTH", depth, *TINY_WIDTH, "MODEL.RESNETS.OUT_FEATURES", ALL)
    backbone = build_rgsnet_backbone(cfg, ShapeSpec(channels=3))
    assert [len(s) for s in backbone.stages] == expected


@pytest.mark.parametrize("opts,words", [
    (["MODEL.RGSNET.VARIANT", "Res-RGX"], ["MODEL.RGSNET.VARIANT", "'Res-RGX'", "b-RGS", "Preact"]),
    (["MODEL.RGSNET.GN_GROUPS", 24], ["MODEL.RGSNET.GN_GROUPS", "24", "channels"]),
    (["MODEL.RESNETS.DEPTH", 51], ["MODEL.RESNETS.DEPTH", "51", "26", "200", "BLOCKS_PER_STAGE"]),
    (["MODEL.RGSNET.BLOCKS_PER_STAGE", [3, 4, 0, 3]], ["MODEL.RGSNET.BLOCKS_PER_STAGE", "[3, 4, 0, 3]", "4 positive"]),
    (["MODEL.RGSNET.SHORTCUT_IMPL", "fast"], ["MODEL.RGSNET.SHORTCUT_IMPL", "'fast'", "reference", "lean"]),
    (["MODEL.RGSNET.SE_REDUCTION", -1], ["MODEL.RGSNET.SE_REDUCTION", "-1"]),
])
def test_bad_configs_fail_at_build_time_naming_key_value_choices(opts, words):
    cfg = rgs_cfg(*opts, "MODEL.RESNETS.OUT_FEATURES", ALL)
    with pytest.raises(ConfigError) as err:
        build_rgsnet_backbone(cfg, ShapeSpec(channels=3))
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_explicit_blocks_per_stage_and_case_insensitive_variant():
    cfg = rgs_cfg("MODEL.RGSNET.BLOCKS_PER_STAGE", [1, 1, 2, 1], "MODEL.RGSNET.VARIANT", "res-rgs", *TINY_WIDTH,
                  "MODEL.RESNETS.OUT_FEATURES", ALL)
    backbone = build_rgsnet_backbone(cfg, ShapeSpec(channels=3))
    assert [len(s) for s in backbone.stages] == [1, 1, 2, 1]
    assert backbone.spec.variant.name == "Res-RGS" and backbone.res4[1].inner_norm is not None
