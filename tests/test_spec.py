"""RGSNetSpec and the variant table: one description, validated in one place, read by everything."""
import pytest
import torch
from torch import nn

from detectron2.layers import ShapeSpec

from rgs_detectron.classification import RGSNetClassifier
from rgs_detectron.errors import ConfigError
from rgs_detectron.modeling import VARIANTS, RGSNet, RGSNetSpec, build_rgsnet_backbone, make_rgsnet_stages
from rgs_detectron.modeling.spec_record import read_record
from rgs_detectron.modeling.variants import twin_of

from common import TINY_WIDTH, rgs_cfg

ALL = ["res2", "res3", "res4", "res5"]


def test_config_and_keywords_describe_the_same_network():
    cfg = rgs_cfg("MODEL.RGSNET.VARIANT", "b-rgs", "MODEL.RESNETS.DEPTH", 26, *TINY_WIDTH, "MODEL.RESNETS.NORM", "BN",
                  "MODEL.RGSNET.SE_REDUCTION", 4, "MODEL.RESNETS.STRIDE_IN_1X1", False)
    from_cfg = RGSNetSpec.from_cfg(cfg)
    from_kwargs = RGSNetSpec.create("b-RGS", 26, 0.25, se_reduction=4, norm="BN")
    assert from_cfg == from_kwargs and str(from_cfg.variant) == "b-RGS" and from_cfg.gn_groups == 8
    assert from_cfg.depth == 26 and from_cfg.blocks_per_stage == (2, 2, 2, 2)
    a = build_rgsnet_backbone(cfg, ShapeSpec(channels=3))
    b = RGSNet(variant="b-RGS", depth=26, width_mult=0.25, se_reduction=4, norm="BN", out_features=["res4"])
    assert list(a.state_dict()) == list(b.state_dict())


def test_spec_holds_the_variants_row():
    """``spec.variant`` is the table's row; its name is what users write and what files record."""
    spec = RGSNetSpec.create("res-rgs", 26, 0.25)
    assert spec.variant is VARIANTS["Res-RGS"] and str(spec.variant) == "Res-RGS" and f"{spec.variant}" == "Res-RGS"
    assert spec.to_dict()["variant"] == "Res-RGS" and read_record(spec.to_dict(), "a record") == spec
    assert spec.replace(variant="B-rgs").variant is VARIANTS["b-RGS"]
    assert RGSNet(variant="b-RGS", depth=26, width_mult=0.25).spec.variant is VARIANTS["b-RGS"]
    assert not hasattr(spec, "rule")


def test_architecture_settings_give_the_spec_back():
    for spec in (RGSNetSpec.create("Res-RGS", 50), RGSNetSpec.create("GS", 26, 0.5, se_reduction=16),
                 RGSNetSpec.create("original", blocks_per_stage=[1, 2, 3, 1], num_groups=32, width_per_group=4)):
        opts = [x for kv in spec.architecture_settings().items() for x in kv]
        again = RGSNetSpec.from_cfg(rgs_cfg(*opts, "MODEL.RESNETS.NORM", spec.norm))
        assert again == spec


def test_replace_validates_the_changed_spec():
    spec = RGSNetSpec.create("b-RGS", 26, 0.25)
    with pytest.raises(ConfigError, match="res5_dilation"):
        spec.replace(res5_dilation=3)


@pytest.mark.parametrize("kwargs,words", [
    (dict(variant="Res-RGX"), "variant (MODEL.RGSNET.VARIANT) = 'Res-RGX' is invalid: choose one of original"),
    (dict(depth=51), "depth = 51 is invalid: RGSNet depths are 18, 26, 32, 34"),
    (dict(width_mult=0.3), "width_mult = 0.3 gives 19.2 for stem_channels"),
    (dict(gn_groups=24), "which 24 groups do not divide"),
    (dict(shortcut_impl="fast"), "shortcut_impl (MODEL.RGSNET.SHORTCUT_IMPL) = 'fast' is invalid"),
    (dict(norm="XN"), "norm (MODEL.RESNETS.NORM) = 'XN' is invalid"),
    (dict(stem="tiny"), "stem = 'tiny' is invalid: choose one of imagenet, small"),
    (dict(nonsense=1), "unknown RGSNet spec argument(s) ['nonsense']"),
])
def test_keyword_errors_name_the_argument_and_the_choices(kwargs, words):
    args = {"variant": "Res-RGS", **kwargs}
    with pytest.raises(ConfigError) as err:
        RGSNetSpec.create(**args)
    assert words in str(err.value)


def test_group_norm_rules_apply_only_to_variants_with_group_norm():
    """A width that no GN group count fits is fine for variants without GroupNorm."""
    for variant in ("original", "RBS", "Preact"):
        spec = RGSNetSpec.create(variant, 26, res2_out_channels=100, stem_channels=16, width_per_group=16)
        assert RGSNet(spec=spec, out_features=["res3"])(torch.randn(1, 3, 64, 64))["res3"].shape[1] == 200
    with pytest.raises(ConfigError, match="no whole count for res2_out_channels=100"):
        RGSNetSpec.create("b-RGS", 26, res2_out_channels=100, stem_channels=16, width_per_group=16)
    # 2GN's norms sit on the bottleneck only: an output width GN cannot split does not matter.
    spec = RGSNetSpec.create("2GN", 26, res2_out_channels=100, stem_channels=16, width_per_group=16, gn_groups=8)
    assert spec.gn_groups == 8


@pytest.mark.parametrize("norm,shortcut_type", [("BN", nn.BatchNorm2d), ("GN", nn.BatchNorm2d),
                                                ("FrozenBN", "FrozenBatchNorm2d")])
def test_rbs_shortcut_is_a_batch_norm_whatever_the_backbone_norm(norm, shortcut_type):
    spec = RGSNetSpec.create("RBS", 26, 0.5, norm=norm)  # 0.5x: Detectron2's GN needs 32 | channels
    block = RGSNet(spec=spec, out_features=["res2"]).res2[1]
    if isinstance(shortcut_type, str):
        assert type(block.shortcut_norm).__name__ == shortcut_type
    else:
        assert isinstance(block.shortcut_norm, shortcut_type)
    assert type(block.conv1.norm).__name__ == {"BN": "BatchNorm2d", "GN": "GroupNorm",
                                               "FrozenBN": "FrozenBatchNorm2d"}[norm]


def test_rbs_and_b_rgs_differ_under_gn():
    """RBS under NORM GN once became b-RGS (its shortcut norm followed MODEL.RESNETS.NORM)."""
    torch.manual_seed(0)
    rbs = RGSNet(spec=RGSNetSpec.create("RBS", 26, 0.5, norm="GN"), out_features=ALL)
    brgs = RGSNet(spec=RGSNetSpec.create("b-RGS", 26, 0.5, norm="GN"), out_features=ALL)
    assert any(k.endswith("shortcut_norm.running_mean") for k in rbs.state_dict())
    assert not any(k.endswith("shortcut_norm.running_mean") for k in brgs.state_dict())


def test_preact_first_block_uses_the_stems_activation():
    """He et al.: the stem's BN-ReLU is the first unit's pre-activation (no second BN-ReLU)."""
    spec = RGSNetSpec.create("Preact", 26, 0.25)
    stages = make_rgsnet_stages(spec)
    assert stages[0][0].norm1 is None and stages[0][1].norm1 is not None
    assert all(stage[0].norm1 is not None for stage in stages[1:])  # their input is a raw sum
    classifier = RGSNetClassifier(spec)
    assert classifier.layer1[0].bn1 is None and classifier.layer2[0].bn1 is not None


def test_twins_follow_from_the_table():
    twins = {name: twin_of(v) for name, v in VARIANTS.items() if twin_of(v)}
    assert twins == {"b-RGS": "GS", "GS": "b-RGS", "d-RGS": "Res-RGS", "Res-RGS": "d-RGS"}


def test_a_new_variant_is_one_table_row(monkeypatch):
    """Adding a row is all it takes for the backbone, the classifier and the converter."""
    from rgs_detectron.checkpoint.convert import expected_shapes, map_names
    from rgs_detectron.modeling import variants

    row = variants.Variant("RG-identity", "test row", shortcut="G", keep_identity=True, post="relu")
    monkeypatch.setitem(variants.VARIANTS, row.name, row)
    spec = RGSNetSpec.create("rg-identity", 26, 0.25)
    out = RGSNet(spec=spec, out_features=ALL)(torch.randn(1, 3, 64, 64))
    assert out["res5"].min() >= 0  # post "relu"
    classifier = RGSNetClassifier(spec)
    names, _, _ = map_names(classifier.state_dict(), spec)
    assert set(names) == set(expected_shapes(spec)) and "res2.1.shortcut_norm.weight" in names


def test_small_stem_is_for_classification_only():
    spec = RGSNetSpec.create("Res-RGS", 26, 0.25, stem="small")
    logits = RGSNetClassifier(spec, num_classes=10)(torch.randn(2, 3, 28, 28))
    assert logits.shape == (2, 10)
    with pytest.raises(ConfigError, match="small-image stem is for 28-32 pixel classification"):
        RGSNet(spec=spec, out_features=ALL)
