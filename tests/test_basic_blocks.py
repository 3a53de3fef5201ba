"""Depths 18 and 34: basic blocks, as torchvision's resnet18/34 and Detectron2's R18/R34.

``original`` must be those networks exactly (names and outputs with the same weights; for
Detectron2's: ``test_backbone.py::test_original_matches_detectron2_resnet``); the RGS
variants' basic blocks are checked against their equations in ``test_equations.py``.
"""
import pytest
import torch
import torchvision

from detectron2.checkpoint import DetectionCheckpointer

from rgs_detectron.checkpoint import IncompatibleCheckpointError, RGSCheckpointer
from rgs_detectron.checkpoint.convert import convert_checkpoint
from rgs_detectron.classification import RGSNetClassifier
from rgs_detectron.errors import ConfigError
from rgs_detectron.modeling import RGSNet, RGSNetSpec
from rgs_detectron.modeling.spec_record import encode_record, read_record

from common import randomize_frozen_bn, rgs_cfg

ALL = ["res2", "res3", "res4", "res5"]
TORCHVISION = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34}


def _randomize_bn(model):
    """Non-trivial BatchNorm statistics (eval mode uses them), so that equal outputs mean something."""
    with torch.no_grad():
        randomize_frozen_bn(model)
    return model.eval()


def _torchvision_features(m, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    out = {}
    for i, name in enumerate(("layer1", "layer2", "layer3", "layer4")):
        x = out[f"res{i + 2}"] = getattr(m, name)(x)
    return out


@pytest.mark.parametrize("depth", [18, 34])
def test_original_classifier_is_torchvision(depth):
    theirs = _randomize_bn(TORCHVISION[depth]())
    ours = RGSNetClassifier(RGSNetSpec.create("original", depth)).eval()
    names_and_shapes = lambda model: [(k, v.shape) for k, v in model.state_dict().items()]  # noqa: E731
    assert names_and_shapes(ours) == names_and_shapes(theirs)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)


def test_converter_maps_torchvision_resnet18_onto_the_r18_backbone(tmp_path):
    model = _randomize_bn(torchvision.models.resnet18())
    torch.save(model.state_dict(), tmp_path / "resnet18.pth")
    spec = RGSNetSpec.create("original", 18)
    result = convert_checkpoint(str(tmp_path / "resnet18.pth"), str(tmp_path / "r18.pth"), spec)
    assert result.settings["MODEL.RESNETS.DEPTH"] == 18 and result.settings["MODEL.RESNETS.RES2_OUT_CHANNELS"] == 64
    backbone = RGSNet(spec=spec.replace(norm="FrozenBN"), out_features=ALL).eval()
    DetectionCheckpointer(backbone).load(str(tmp_path / "r18.pth"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want, got = _torchvision_features(model, x), backbone(x)
    for k in ALL:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-5)


@pytest.mark.parametrize("opts,words", [
    ([], "res2_out_channels (MODEL.RESNETS.RES2_OUT_CHANNELS) = 256 is invalid: basic blocks (MODEL.RESNETS.DEPTH "
     "18 or 34) keep the stem's width in res2 (stem_channels): set it to 64"),
    (["MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.RESNETS.NUM_GROUPS", 32
      ], "num_groups (MODEL.RESNETS.NUM_GROUPS) = 32 is invalid: basic blocks (MODEL.RESNETS.DEPTH 18 or 34) have no "
     "grouped conv: set it to 1"),
    (["MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.RESNETS.WIDTH_PER_GROUP", 48, "MODEL.RESNETS.STRIDE_IN_1X1", False
      ], "width_per_group (MODEL.RESNETS.WIDTH_PER_GROUP) = 48 is invalid: basic blocks (MODEL.RESNETS.DEPTH 18 or 34) "
     "have no bottleneck width"),
    (["MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.RESNETS.STRIDE_IN_1X1", True
      ], "stride_in_1x1 (MODEL.RESNETS.STRIDE_IN_1X1) = True is invalid: basic blocks (MODEL.RESNETS.DEPTH 18 or 34) "
     "have no 1x1 conv to put the stride in: set it to False"),
])
def test_what_a_basic_block_cannot_vary_is_refused_naming_the_key(opts, words):
    with pytest.raises(ConfigError) as err:
        RGSNetSpec.from_cfg(rgs_cfg("MODEL.RESNETS.DEPTH", 18, *opts))
    assert words in str(err.value)


def test_basic_spec_round_trips_through_its_settings():
    for spec in (RGSNetSpec.create("b-RGS", 34, 0.5), RGSNetSpec.create("Res-RGS", 18, blocks_per_stage=[1, 1, 2, 1])):
        opts = [x for kv in spec.architecture_settings().items() for x in kv]
        assert RGSNetSpec.from_cfg(rgs_cfg(*opts, "MODEL.RESNETS.NORM", spec.norm)) == spec
        assert read_record(spec.to_dict(), "a mapping") == read_record(encode_record(spec), "a record") == spec


def test_a_width_difference_at_depth_18_names_what_differs_before_the_names(tmp_path):
    """Both are "Res-RGS-18": the refusal led with that ("made for Res-RGS-18 but the model is Res-RGS-18")."""
    half = RGSNet(spec=RGSNetSpec.create("Res-RGS", 18, 0.5, norm="FrozenBN"), out_features=ALL)
    RGSCheckpointer(half, str(tmp_path)).save("half")
    full = RGSNet(spec=RGSNetSpec.create("Res-RGS", 18, norm="FrozenBN"), out_features=ALL)
    with pytest.raises(IncompatibleCheckpointError) as err:
        RGSCheckpointer(full).load(str(tmp_path / "half.pth"))
    message = str(err.value)
    assert "do not fit the model's backbone: they differ in stem_channels (32 in the weights, 64 in the model), " \
        "res2_out_channels (32 in the weights, 64 in the model), gn_groups (4 in the weights, 8 in the model); they " \
        "were made for Res-RGS-18" in message
    assert message.index("res2_out_channels") < message.index("Res-RGS-18")
