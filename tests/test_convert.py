"""ImageNet classifier -> Detectron2 conversion.

The round trips are the contract: a classifier with random weights and random BN
statistics, saved, converted and loaded with Detectron2's own checkpointer, must give the
same res2..res5 as the classifier's layer1..layer4.
"""
import os
import pickle
import re
import runpy
import sys
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from rgs_detectron.checkpoint import RGSCheckpointer
from rgs_detectron.checkpoint.convert import (
    ConversionError,
    apply_renames,
    convert_checkpoint,
    expected_shapes,
    map_names,
)
from rgs_detectron.classification import RGSNetClassifier
from rgs_detectron.cli import convert as convert_tool
from rgs_detectron.errors import ConfigError, WeightsError
from rgs_detectron.modeling import BLOCKS_PER_DEPTH, VARIANTS, RGSNet, RGSNetSpec
from rgs_detectron.modeling.spec_record import RECORD_KEY, read_record

from common import as_torchvision_weights, tiny_detector_cfg

ROOT = Path(__file__).resolve().parents[1]
C4_RECORD = f"res5.{RECORD_KEY}"  # the record converted files hold for a C4 head's res5
TOOL = ROOT / "tools" / "convert_rgsnet_to_d2.py"
SMALL = dict(depth=26, width_mult=0.25)  # stem 16, res2 64, 16 channels per group, GN groups 8


def build_classifier(variant, depth=50, width_mult=1.0, **extra):
    return RGSNetClassifier(RGSNetSpec.create(variant, depth, width_mult, **extra))


class RecordingCheckpointer(DetectionCheckpointer):
    """Keeps the incompatible keys that the checkpointer only logs."""

    def _log_incompatible_keys(self, incompatible):
        self.incompatible = incompatible
        super()._log_incompatible_keys(incompatible)


def randomize(model, seed=0):
    """Random weights and BN statistics, kept in a range where activations stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.8 + 0.2)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, nn.GroupNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel())**0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def d2_backbone(spec):
    return RGSNet(spec=spec.replace(norm="FrozenBN"), out_features=["res2", "res3", "res4", "res5"]).eval()


def load_d2(model, path):
    ck = RecordingCheckpointer(model)
    ck.load(str(path))
    return ck.incompatible


def assert_same_features(classifier, backbone, size=64):
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = classifier.eval().forward_features(x)
        got = backbone(x)
    for i in range(4):
        a, b = ref[f"layer{i + 1}"], got[f"res{i + 2}"]
        assert a.shape == b.shape
        assert a.abs().max() > 1e-3  # a dead network would match trivially
        diff = (a - b).abs().max().item()
        assert diff <= 1e-5, f"res{i + 2} differs from layer{i + 1} by {diff}"


def round_trip(tmp_path, classifier, cfg, saved=None, out_name="d2.pth", **kwargs):
    src = tmp_path / "imagenet.pth"
    torch.save(classifier.state_dict() if saved is None else saved, src)
    out = tmp_path / out_name
    result = convert_checkpoint(str(src), str(out), cfg, **kwargs)
    backbone = d2_backbone(cfg)
    incompatible = load_d2(backbone, out)
    assert not incompatible.missing_keys
    assert incompatible.unexpected_keys == [C4_RECORD]  # a C4 head's res5 has a place for it
    assert not incompatible.incorrect_shapes
    assert_same_features(classifier, backbone)
    src.unlink()
    return result, out


def small_cfg(variant, **extra):
    return RGSNetSpec.create(variant, **SMALL, **extra)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A small Res-RGS classifier's state dict on disk, for the failure cases."""
    d = tmp_path_factory.mktemp("small")
    model = randomize(build_classifier("Res-RGS", **SMALL))
    path = d / "res_rgs26.pth"
    torch.save(model.state_dict(), path)
    return path, model


def assert_fails(tmp_path, src, cfg, *patterns, out_name="out.pth", **kwargs):
    out = tmp_path / out_name
    with pytest.raises(WeightsError) as e:
        convert_checkpoint(str(src), str(out), cfg, **kwargs)
    for p in patterns:
        assert re.search(p, str(e.value)), f"{p!r} not in:\n{e.value}"
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    return str(e.value)


# --------------------------------------------------------------------------- the classifier


def test_original_classifier_is_torchvision_resnet50():
    ours = [(k, tuple(v.shape)) for k, v in build_classifier("original").state_dict().items()]
    theirs = [(k, tuple(v.shape)) for k, v in torchvision.models.resnet50().state_dict().items()]
    assert ours == theirs


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_and_depth_maps_onto_the_backbone(variant):
    """Names and shapes only (no weights): the map covers every layout exactly."""
    for depth in BLOCKS_PER_DEPTH:
        spec = RGSNetSpec.create(variant, depth, 0.125)
        names, _, dropped = map_names(RGSNetClassifier(spec).state_dict(), spec)
        expected = expected_shapes(spec)
        assert list(names) and set(names) == set(expected), (variant, depth)
        assert all(tuple(v.shape) == expected[k] for k, v in names.items())
        assert {"fc.weight", "fc.bias"} <= {n for n, _ in dropped}
        assert any(n.startswith("final_norm.") for n, _ in dropped) == (variant == "Preact")


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("variant", ["original", "b-RGS", "d-RGS", "Res-RGS"])
def test_round_trip_depth50(tmp_path, variant):
    cfg = RGSNetSpec.create(variant, 50)
    round_trip(tmp_path, randomize(build_classifier(variant, 50)), cfg)


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_depth26_quarter_width(tmp_path, variant):
    result, _ = round_trip(tmp_path, randomize(build_classifier(variant, **SMALL)), small_cfg(variant))
    dropped = {n for n, _ in result.dropped}
    assert {"fc.weight", "fc.bias"} <= dropped
    assert ("final_norm.weight" in dropped) == (variant == "Preact")
    if variant == "Preact":
        assert any("final_norm" in line for line in result.summary())


@pytest.mark.parametrize(
    "extra",
    [dict(se_reduction=4),
     dict(num_groups=2, width_per_group=8),
     dict(blocks_per_stage=[1, 2, 1, 1], gn_groups=4)],
    ids=["SE", "ResNeXt", "explicit-layout"],
)
def test_round_trip_options(tmp_path, extra):
    model = randomize(build_classifier("Res-RGS", **SMALL, **extra))
    round_trip(tmp_path, model, small_cfg("Res-RGS", **extra))


def test_torchvision_resnet50_round_trip(tmp_path):
    """DataParallel-style names under 'state_dict', as training scripts save them."""
    model = randomize(torchvision.models.resnet50())
    model.forward_features = lambda x: _torchvision_features(model, x)
    saved = {"epoch": 90, "arch": "resnet50", "state_dict": {"module." + k: v for k, v in model.state_dict().items()}}
    result, _ = round_trip(tmp_path, model, RGSNetSpec.create("original", 50), saved=saved)
    assert result.settings["INPUT.FORMAT"] == "RGB"
    assert result.settings["MODEL.RESNETS.STRIDE_IN_1X1"] is False
    assert result.settings["MODEL.PIXEL_MEAN"] == [123.675, 116.280, 103.530]


def _torchvision_features(m, x):
    x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    out = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        x = out[name] = getattr(m, name)(x)
    return out


def test_pkl_output_is_refused_with_the_reason(tmp_path, small_checkpoint):
    """Detectron2 unpickles .pkl weights with plain pickle: the converter never writes one."""
    with pytest.raises(ConfigError, match="plain pickle"):
        convert_checkpoint(str(small_checkpoint[0]), str(tmp_path / "d2.pkl"), small_cfg("Res-RGS"))
    assert os.listdir(tmp_path) == []


def test_pth_output_loads_with_weights_only(tmp_path, small_checkpoint):
    src, _ = small_checkpoint
    out = tmp_path / "d2.pth"
    convert_checkpoint(str(src), str(out), small_cfg("Res-RGS"))
    data = torch.load(out, weights_only=True)
    assert set(data) == {"model", "__author__", "matching_heuristics"}
    for key in (RECORD_KEY, C4_RECORD):  # the record: what decides the tensors and their function
        assert read_record(data["model"][key], key) == small_cfg("Res-RGS")
    assert all(isinstance(v, torch.Tensor) for v in data["model"].values())
    assert not any(k.endswith("num_batches_tracked") or k.startswith("fc.") for k in data["model"])


def test_rename_rules(tmp_path):
    """A checkpoint from another code base: 'encoder.' prefix, 'proj' for 'downsample'."""
    model = randomize(build_classifier("Res-RGS", **SMALL))
    foreign = {"encoder." + k.replace(".downsample.", ".proj."): v for k, v in model.state_dict().items()}
    cfg = small_cfg("Res-RGS")
    # Without the rules the names are unknown, and the error says so.
    src = tmp_path / "foreign.pth"
    torch.save(foreign, src)
    assert_fails(tmp_path, src, cfg, r"unknown", r"encoder\.layer1\.0\.proj\.0", r"--rename")
    # Plus tensors of another network (a momentum encoder) that a rule drops.
    foreign.update({"momentum." + k: v for k, v in list(foreign.items())[:5]})
    result, _ = round_trip(tmp_path, model, cfg, saved=foreign,
                           renames=[r"^momentum\..*=", r"^encoder\.=", r"\.proj\.=.downsample."])
    assert ("momentum.encoder.conv1.weight", "renamed to nothing by --rename") in result.dropped
    assert ("encoder.fc.weight", "classifier head (not part of the backbone)") in result.dropped


def test_apply_renames_rejects_collisions():
    with pytest.raises(ConversionError, match="map both"):
        apply_renames({"a.x": torch.zeros(1), "b.x": torch.zeros(1)}, [r"^[ab]\.="])
    with pytest.raises(ConfigError, match="REGEX=REPLACEMENT"):
        apply_renames({"a": torch.zeros(1)}, ["no-equals-sign"])


# --------------------------------------------------------------------------- loading in detectors


@pytest.mark.parametrize("arch", ["FPN", "C4"])
def test_loads_into_faster_rcnn(tmp_path, small_checkpoint, arch):
    src, classifier = small_checkpoint
    out = tmp_path / "d2.pth"
    convert_checkpoint(str(src), str(out), small_cfg("Res-RGS"))
    cfg = tiny_detector_cfg("Res-RGS", arch, "MODEL.WEIGHTS", str(out), "MODEL.RESNETS.NORM", "FrozenBN")
    # C4: res2..res4 in the backbone, res5 inside the ROI head
    prefixes = ("backbone.bottom_up.", ) if arch == "FPN" else ("backbone.", "roi_heads.res5.")
    model = build_model(cfg)
    incompatible = load_d2(model, cfg.MODEL.WEIGHTS)
    assert incompatible.unexpected_keys == ([C4_RECORD] if arch == "FPN" else [])
    assert not incompatible.incorrect_shapes
    assert not [k for k in incompatible.missing_keys if k.startswith(prefixes)]
    state = model.state_dict()
    ref = classifier.state_dict()
    res5 = "backbone.bottom_up.res5" if arch == "FPN" else "roi_heads.res5"
    stem = "backbone.bottom_up.stem" if arch == "FPN" else "backbone.stem"
    assert torch.equal(state[f"{res5}.1.shortcut_norm.weight"], ref["layer4.1.shortcut_norm.weight"])
    assert torch.equal(state[f"{res5}.0.shortcut.norm.running_var"], ref["layer4.0.downsample.1.running_var"])
    assert torch.equal(state[f"{stem}.conv1.norm.running_mean"], ref["bn1.running_mean"])


# --------------------------------------------------------------------------- failures


def _tampered(tmp_path, small_checkpoint, change):
    state = dict(torch.load(small_checkpoint[0], weights_only=True))
    change(state)
    path = tmp_path / "tampered.pth"
    torch.save(state, path)
    return path


def test_unknown_names_fail(tmp_path, small_checkpoint):
    src = _tampered(tmp_path, small_checkpoint, lambda s: s.update({"layer1.0.extra.weight": torch.zeros(3)}))
    assert_fails(tmp_path, src, small_cfg("Res-RGS"), r"nothing was written", r"unknown", r"layer1\.0\.extra\.weight")


def test_wrong_variant_fails_with_a_hint(tmp_path, small_checkpoint):
    assert_fails(tmp_path, small_checkpoint[0], small_cfg("original"), r"unknown", r"shortcut_norm", r"check --variant")


def test_converted_file_is_not_converted_twice(tmp_path, small_checkpoint):
    out = tmp_path / "d2.pth"
    convert_checkpoint(str(small_checkpoint[0]), str(out), small_cfg("Res-RGS"))
    # Its names are Detectron2's already; when they do not fit, the error says what the file is.
    assert_fails(tmp_path, out, small_cfg("original"), r"converted already", out_name="again.pth")


def test_misshaped_tensor_fails(tmp_path, small_checkpoint):
    wrong = {"layer2.0.conv2.weight": torch.zeros(32, 32, 1, 1)}
    src = _tampered(tmp_path, small_checkpoint, lambda s: s.update(wrong))
    assert_fails(tmp_path, src, small_cfg("Res-RGS"), r"mis-shaped", r"layer2\.0\.conv2\.weight",
                 r"\(32, 32, 1, 1\), expected \(32, 32, 3, 3\)")


def _drop_block(state):
    for k in [k for k in state if k.startswith("layer3.1.")]:
        del state[k]


def test_missing_block_fails(tmp_path, small_checkpoint):
    src = _tampered(tmp_path, small_checkpoint, _drop_block)
    assert_fails(tmp_path, src, small_cfg("Res-RGS"), r"missing", r"res4\.1\.\* \(whole block\)",
                 r"\[2, 2, 1, 2\] blocks per stage, the target \[2, 2, 2, 2\]")


def test_allow_partial_writes_what_matches(tmp_path, small_checkpoint):
    src = _tampered(tmp_path, small_checkpoint, _drop_block)
    out = tmp_path / "partial.pth"
    result = convert_checkpoint(str(src), str(out), small_cfg("Res-RGS"), allow_partial=True)
    assert result.missing and all(k.startswith("res4.1.") for k in result.missing)
    assert any("allow-partial" in line for line in result.summary())
    incompatible = load_d2(d2_backbone(small_cfg("Res-RGS")), out)
    # FrozenBN fills absent running stats itself, so Detectron2 reports only the rest.
    assert incompatible.missing_keys and set(incompatible.missing_keys) <= set(result.missing)
    assert incompatible.unexpected_keys == [C4_RECORD]


def test_truncated_file_fails(tmp_path, small_checkpoint):
    data = small_checkpoint[0].read_bytes()
    src = tmp_path / "truncated.pth"
    src.write_bytes(data[:len(data) // 2])
    assert_fails(tmp_path, src, small_cfg("Res-RGS"), r"truncated or corrupt")
    src.write_bytes(b"")
    assert_fails(tmp_path, src, small_cfg("Res-RGS"), r"empty file")


class _Malicious:
    marker = None

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}", ))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_malicious_pickle_is_refused_not_executed(tmp_path, container):
    marker = tmp_path / "EXECUTED"
    evil = _Malicious()
    evil.marker = marker
    src = tmp_path / "evil.pth"
    payload = {"state_dict": {"conv1.weight": torch.zeros(1)}, "hook": evil}
    if container == "torch.save":
        torch.save(payload, src)
    else:
        with open(src, "wb") as f:
            pickle.dump(payload, f)
    assert not marker.exists()
    assert_fails(tmp_path, src, small_cfg("Res-RGS"), r"not a plain tensor checkpoint", r"not executed")
    assert not marker.exists()


def test_existing_output_is_kept_unless_overwrite(tmp_path, small_checkpoint):
    out = tmp_path / "out.pth"
    out.write_bytes(b"precious")
    with pytest.raises(ConversionError, match="--overwrite"):
        convert_checkpoint(str(small_checkpoint[0]), str(out), small_cfg("Res-RGS"))
    assert out.read_bytes() == b"precious"
    convert_checkpoint(str(small_checkpoint[0]), str(out), small_cfg("Res-RGS"), overwrite=True)
    assert "model" in torch.load(out, weights_only=True)


def test_failed_write_leaves_nothing(tmp_path, small_checkpoint, monkeypatch):

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="no space left on device while writing .*out.pth"):
        convert_checkpoint(str(small_checkpoint[0]), str(tmp_path / "out.pth"), small_cfg("Res-RGS"))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- command line


def test_cli_with_config_file(tmp_path, small_checkpoint, monkeypatch, capsys):
    """The command line as users run it (the tools/ wrapper, its exit status), with a yaml that leaves INPUT.FORMAT at
    Detectron2's BGR: the printed settings merge back into a config that fits the weights."""
    config = tmp_path / "rgs.yaml"
    config.write_text("MODEL:\n  RESNETS:\n    DEPTH: 26\n    STEM_OUT_CHANNELS: 16\n    RES2_OUT_CHANNELS: 64\n"
                      "    WIDTH_PER_GROUP: 16\n  RGSNET:\n    VARIANT: Res-RGS\n")
    out = tmp_path / "converted.pth"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(TOOL), str(small_checkpoint[0]), str(out), "--config-file", str(config)])
    with pytest.raises(SystemExit) as done:  # in this process: the wrapper's own lines, not the interpreter, tested
        runpy.run_path(str(TOOL), run_name="__main__")
    printed = capsys.readouterr()
    assert done.value.code == 0, printed.err
    assert out.exists()
    for expected in ("Dropped fc.weight, fc.bias", "INPUT.FORMAT = 'BGR'; these weights need 'RGB'",
                     "STRIDE_IN_1X1 = True; these weights need False"):
        assert expected in printed.out, expected
    snippet = printed.out.split("(yaml):\n\n", 1)[1].split("\n\nor as command-line overrides", 1)[0]
    (tmp_path / "settings.yaml").write_text(snippet)
    from rgs_detectron import get_rgsnet_cfg

    cfg = get_rgsnet_cfg(str(tmp_path / "settings.yaml"))
    assert cfg.INPUT.FORMAT == "RGB" and cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False
    assert list(cfg.MODEL.PIXEL_MEAN) == [123.675, 116.28, 103.53] and cfg.MODEL.WEIGHTS == str(out)
    frozen = small_cfg("Res-RGS").replace(norm="FrozenBN")  # Detectron2's default norm for fine-tuning
    assert RGSNetSpec.from_cfg(cfg) == frozen
    opts = printed.out.rsplit("command-line overrides:\n\n", 1)[1].strip()
    import shlex

    assert RGSNetSpec.from_cfg(get_rgsnet_cfg(None, shlex.split(opts))) == frozen


def test_cli_failures_exit_with_status_and_one_line(tmp_path, small_checkpoint, capsys):
    out = tmp_path / "out.pth"
    assert convert_tool.main([str(small_checkpoint[0]), str(out), "--variant", "Res-RGS"]) == 1  # depth 50 expected
    err = capsys.readouterr().err
    assert err.startswith("convert: error:") and "Traceback" not in err
    assert "whole block" in err and not out.exists()
    assert convert_tool.main([str(small_checkpoint[0]), str(out)]) == 2
    assert "--variant" in capsys.readouterr().err
    assert convert_tool.main([str(small_checkpoint[0]), str(out), "--variant", "Res-RGS", "MODEL.X", "1"]) == 2
    assert "need --config-file" in capsys.readouterr().err
    assert convert_tool.main([str(tmp_path / "missing.pth"), str(out), "--variant", "b-RGS"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert convert_tool.main([
        str(small_checkpoint[0]),
        str(out), "--variant", "Res-RGS", "--depth", "26", "--width-mult", "0.25", "--rename", r"^zzz=", "--gn-groups",
        "8"
    ]) == 0
    assert "VARIANT: Res-RGS" in capsys.readouterr().out and out.exists()


def test_an_output_that_is_a_folder_is_a_usage_error_naming_a_file_to_give(tmp_path, small_checkpoint, capsys):
    """Converting into a folder said to pass --overwrite, which cannot replace a folder."""
    with pytest.raises(SystemExit) as done:
        convert_tool.main([str(small_checkpoint[0]), str(tmp_path), "--variant", "Res-RGS", "--depth", "26"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "--overwrite" not in err.splitlines()[-1]
    assert f"convert: error: argument output: '{tmp_path}' is a folder, not a file: give the file to write" in err


# --------------------------------------------------------------------------- warm start from a ResNet


def test_warm_start_from_resnet_is_labelled_and_loads_strictly(tmp_path, capsys):
    """A plain ResNet's weights start a b-RGS detector: shared layers copied, the RG norms at
    GroupNorm's 1/0, the output saying so, and the trainer's strict load accepting the file."""
    resnet = randomize(RGSNetClassifier(RGSNetSpec.create("original", 26, 0.25), num_classes=10))
    src = tmp_path / "resnet26.pth"
    torch.save({"state_dict": resnet.state_dict()}, src)
    out = tmp_path / "b_rgs_warm.pth"
    argv = [
        str(src),
        str(out), "--variant", "b-RGS", "--depth", "26", "--width-mult", "0.25", "--warm-start-from-resnet"
    ]
    assert convert_tool.main(argv) == 0
    printed = capsys.readouterr().out
    assert "WARM START, warm start from ResNet weights (not the paper's protocol)" in printed
    assert "start at: GroupNorm, weight 1, bias 0 (4 modules: layer1.1.shortcut_norm" in printed  # [2, 2, 2, 2]
    saved = torch.load(out, weights_only=True)
    assert "not the paper's protocol" in saved["__author__"]

    cfg = tiny_detector_cfg("b-RGS", "FPN", "MODEL.WEIGHTS", str(out))
    model = build_model(cfg)
    RGSCheckpointer(model).load(str(out))  # strict: every backbone tensor is in the file
    state = model.state_dict()
    ref = resnet.state_dict()
    assert torch.equal(state["backbone.bottom_up.res3.1.conv2.weight"], ref["layer2.1.conv2.weight"])
    assert torch.equal(state["backbone.bottom_up.res2.0.shortcut.norm.running_var"],
                       ref["layer1.0.downsample.1.running_var"])
    assert torch.equal(state["backbone.bottom_up.res4.1.shortcut_norm.weight"], torch.ones(256))
    assert torch.equal(state["backbone.bottom_up.res4.1.shortcut_norm.bias"], torch.zeros(256))


def test_warm_start_refuses_a_resnet_of_another_depth(tmp_path, capsys):
    resnet = RGSNetClassifier(RGSNetSpec.create("original", 38, 0.25))
    src = tmp_path / "resnet38.pth"
    torch.save(resnet.state_dict(), src)
    argv = [
        str(src),
        str(tmp_path / "o.pth"), "--variant", "Res-RGS", "--depth", "26", "--width-mult", "0.25",
        "--warm-start-from-resnet"
    ]
    assert convert_tool.main(argv) == 1
    assert "do not fit this RGSNet's shared layers" in capsys.readouterr().err
    assert not (tmp_path / "o.pth").exists()


def test_an_old_format_checkpoint_without_a_description_asks_for_one(tmp_path, capsys):
    torch.save(
        build_classifier("b-RGS", 26, 0.25).state_dict(), tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert convert_tool.main([str(tmp_path / "old.pth"), str(tmp_path / "out.pth")]) == 2
    err = capsys.readouterr().err
    assert "give --variant" in err and "Traceback" not in err
    assert convert_tool.main([
        str(tmp_path / "old.pth"),
        str(tmp_path / "out.pth"), "--variant", "b-RGS", "--depth", "26", "--width-mult", "0.25"
    ]) == 0


# --------------------------------------------------------------------------- torchvision sources, recorded specs


@pytest.fixture
def torch_cache(tmp_path, monkeypatch):
    """An empty torch cache ($TORCH_HOME) and no network: a download attempt fails as offline."""
    import urllib.error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network in the tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_torchvision_source_is_read_from_torch_cache(tmp_path, torch_cache, capsys, monkeypatch):
    """`torchvision:ResNet50_Weights.IMAGENET1K_V1` is the file torchvision's get_state_dict() caches: placed
    there (here a small ResNet under V1's name), it converts with no network, warm start and plain."""
    torch_cache.mkdir(parents=True)
    resnet = randomize(RGSNetClassifier(RGSNetSpec.create("original", 26, 0.25)))
    torch.save(resnet.state_dict(), tmp_path / "resnet.pth")
    data = (tmp_path / "resnet.pth").read_bytes()
    (torch_cache / as_torchvision_weights(monkeypatch, data)).write_bytes(data)
    small = ["--depth", "26", "--width-mult", "0.25"]
    source = "torchvision:ResNet50_Weights.IMAGENET1K_V1"
    assert convert_tool.main(
        [source, str(tmp_path / "warm.pth"), "--variant", "b-RGS", *small, "--warm-start-from-resnet"]) == 0
    assert convert_tool.main([source, str(tmp_path / "original.pth"), "--variant", "original", *small]) == 0
    assert "WARM START" in capsys.readouterr().out
    load_d2(d2_backbone(small_cfg("original")), tmp_path / "original.pth")


def test_an_uncached_torchvision_source_offline_names_the_file_to_place(tmp_path, torch_cache, capsys):
    out = str(tmp_path / "o.pth")
    # Any of torchvision's weights: the resolver does not care about the depth.
    assert convert_tool.main(["torchvision:ResNet18_Weights.IMAGENET1K_V1", out, "--variant", "original"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"place that file at {str(torch_cache / 'resnet18-f37072fd.pth')!r}" in err
    assert "no network in the tests" in err
    assert convert_tool.main(["torchvision:ResNet50_Weights.IMAGENET1K_V9", out, "--variant", "original"]) == 2
    assert "one of IMAGENET1K_V1, IMAGENET1K_V2" in capsys.readouterr().err


def test_warm_start_refuses_an_rgsnet_classifier(tmp_path, small_checkpoint, torch_cache, capsys, monkeypatch):
    """Copying an RGSNet's own tensors would be labelled a warm start from a ResNet."""
    src, _ = small_checkpoint
    argv = ["--variant", "Res-RGS", "--depth", "26", "--width-mult", "0.25", "--warm-start-from-resnet"]
    assert convert_tool.main([str(src), str(tmp_path / "o.pth"), *argv]) == 1
    err = capsys.readouterr().err
    assert "is an RGSNet checkpoint (it has inner_norm, shortcut_norm layers), not a plain ResNet" in err
    assert not (tmp_path / "o.pth").exists()
    # train_classifier --warm-start goes through the same resolver and the same refusal, before any training.
    from rgs_detectron.cli import train_classifier

    torch_cache.mkdir(parents=True)
    cached = torch_cache / as_torchvision_weights(monkeypatch, src.read_bytes())
    cached.write_bytes(src.read_bytes())
    argv = [
        "--dataset", "digits", "--depth", "26", "--width-mult", "0.25", "--variant", "b-RGS", "--workers", "0",
        "--device", "cpu", "--warm-start", "torchvision:ResNet50_Weights.IMAGENET1K_V1", "--output",
        str(tmp_path / "run")
    ]
    assert train_classifier.main(argv) == 1
    assert f"torchvision:ResNet50_Weights.IMAGENET1K_V1 ({cached}) is an RGSNet checkpoint" in capsys.readouterr().err


def _recorded(tmp_path, variant):
    """A train_classifier-style checkpoint of a small classifier that records its spec."""
    spec = small_cfg(variant)
    path = tmp_path / f"{variant}_classifier.pth"
    torch.save({"state_dict": randomize(RGSNetClassifier(spec)).state_dict(), "rgsnet_spec": spec.to_dict()}, path)
    return path


def test_a_target_that_contradicts_the_recorded_spec_is_refused(tmp_path, capsys):
    """d-RGS and Res-RGS have the same tensors: only the record tells them apart, and it wins."""
    src = _recorded(tmp_path, "Res-RGS")
    out = tmp_path / "o.pth"
    argv = [str(src), str(out), "--variant", "d-RGS", "--depth", "26", "--width-mult", "0.25"]
    assert convert_tool.main(argv) == 1  # the same refusal, words and status as a detector's loader
    err = capsys.readouterr().err
    assert f"the weights in {str(src)!r} do not fit the target given: they differ in variant ('Res-RGS' in the " \
        "weights, 'd-RGS' in the target); they were made for Res-RGS-26, the target given is d-RGS-26" in err
    assert not out.exists()
    assert convert_tool.main(argv[:2] + ["--variant", "Res-RGS", "--depth", "26", "--width-mult", "0.25"]) == 0


def test_the_input_is_read_once(tmp_path, monkeypatch):
    reads = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda path, *a, **k: reads.append(str(path)) or real(path, *a, **k))
    src = _recorded(tmp_path, "b-RGS")
    assert convert_tool.main([str(src), str(tmp_path / "o.pth")]) == 0
    assert reads == [str(src)]


@pytest.mark.parametrize("variant,twin", [("Res-RGS", "d-RGS"), ("b-RGS", "GS")])
def test_converted_weights_never_load_into_their_twin(tmp_path, variant, twin, capsys):
    src = _recorded(tmp_path, variant)
    out = tmp_path / "d2.pth"
    assert convert_tool.main([str(src), str(out)]) == 0
    assert f"Note: architecture recorded in {src}: {variant}-26" in capsys.readouterr().out
    RGSCheckpointer(build_model(tiny_detector_cfg(variant))).load(str(out))
    with pytest.raises(WeightsError, match=f"made for {variant}-26, the model's backbone.bottom_up is {twin}-26"):
        RGSCheckpointer(build_model(tiny_detector_cfg(twin))).load(str(out))


def test_the_warm_start_report_says_what_the_rg_norms_start_at_and_claims_no_training(tmp_path, capsys):
    """With --rg-init zero the RG shortcut's GroupNorm weight starts at 0 (the report said 1), and a warm start
    was never trained as its variant (the twin note said it "must have been trained as" Res-RGS)."""
    resnet = randomize(RGSNetClassifier(RGSNetSpec.create("original", 26, 0.25), num_classes=10))
    src = tmp_path / "resnet26.pth"
    torch.save(resnet.state_dict(), src)
    small = ["--variant", "Res-RGS", "--depth", "26", "--width-mult", "0.25"]
    assert convert_tool.main(
        [str(src), str(tmp_path / "w.pth"), *small, "--rg-init", "zero", "--warm-start-from-resnet"]) == 0
    printed = capsys.readouterr().out
    assert "GroupNorm, weight 0, bias 0 (4 modules: layer1.1.shortcut_norm" in printed  # the identity blocks' RG
    assert "GroupNorm, weight 1, bias 0 (" in printed  # inner_norm, as from scratch
    assert "trained as" not in printed and "cannot tell" not in printed
    assert not re.search(r"GroupNorm, weight 1, bias 0 \([^)]*shortcut_norm", printed)
    # Without a warm start and without a record, the twin note says what the output records, and why.
    plain = _recorded(tmp_path, "d-RGS")
    torch.save(torch.load(plain, weights_only=True)["state_dict"], plain)
    assert convert_tool.main([str(plain), str(tmp_path / "p.pth"), *small]) == 0
    printed = capsys.readouterr().out
    assert "Note: Res-RGS and d-RGS have exactly the same tensors, so nothing in the input tells which one it was " \
        "trained as: the output records Res-RGS, as the target says; if it was trained as d-RGS, convert it " \
        "again for d-RGS" in printed and "must have been" not in printed
