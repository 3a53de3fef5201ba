"""Checkpoints are never half-written; weight loads are never silently partial; no
weights file runs code; unreadable files are named."""
import errno
import logging
import os
import pickle
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from detectron2.modeling import build_model

from rgs_detectron.checkpoint import IncompatibleCheckpointError, RGSCheckpointer
from rgs_detectron.errors import ConfigError, DiskFullError, WeightsError
from rgs_detectron.modeling.spec_record import RECORD_KEY
from rgs_detectron.utils.fileio import atomic_write, remove_stale_temp_files

from common import save_random_detector, tiny_detector_cfg


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def boom(f):
        f.write("half")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        atomic_write(str(path), boom, mode="w")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_full_disk_says_so_and_names_the_file(tmp_path):
    path = tmp_path / "model_final.pth"
    path.write_bytes(b"previous")

    def full(f):
        f.write(b"part")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError) as err:
        atomic_write(str(path), full)
    assert "no space left on device" in str(err.value) and "model_final.pth" in str(err.value)
    assert path.read_bytes() == b"previous" and os.listdir(tmp_path) == ["model_final.pth"]

    # torch.save reports a full disk as a RuntimeError from its zip writer.

    def torch_full(f):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0: file write failed")

    with pytest.raises(DiskFullError):
        atomic_write(str(path), torch_full)


KILL_DURING_SAVE = """
import os, signal, sys, torch
sys.path.insert(0, {tests!r})
from detectron2.modeling import build_model
from rgs_detectron.checkpoint import RGSCheckpointer
from common import tiny_detector_cfg
model = build_model(tiny_detector_cfg("Res-RGS"))
ckpt = RGSCheckpointer(model, {out!r})
ckpt.save("model_0000009", iteration=9)
def dying_save(obj, f, *a, **k):
    f.write(b"PK\\x03\\x04 half a checkpoint" * 1000)
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = dying_save
ckpt.save("model_0000019", iteration=19)
"""


@pytest.mark.slow
def test_process_killed_while_saving_leaves_previous_checkpoint_and_a_removable_temp(tmp_path):
    script = KILL_DURING_SAVE.format(tests=os.path.dirname(os.path.abspath(__file__)), out=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert not (tmp_path / "model_0000019.pth").exists()
    leftovers = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert len(leftovers) == 1  # the killed writer's; the next run removes it
    model = build_model(tiny_detector_cfg("Res-RGS"))
    checkpointer = RGSCheckpointer(model, str(tmp_path))
    assert checkpointer.resume_or_load("", resume=True)["iteration"] == 9
    assert checkpointer.clean_stale_temp_files() == leftovers
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_temp_files_of_live_writers_are_kept(tmp_path):
    live = tmp_path / f".model.pth.{os.getpid()}.0123abcd.tmp"
    live.write_bytes(b"being written")
    foreign = tmp_path / ".notes.txt.tmp"
    foreign.write_text("not ours")
    assert remove_stale_temp_files(str(tmp_path)) == []
    assert live.exists() and foreign.exists()


def test_temp_names_fit_in_255_bytes_and_stay_recognisable(tmp_path):
    """A 250-byte file name: the temporary name is cut to fit, and keeps the writer's pid."""
    from rgs_detectron.utils.fileio import temp_path

    tmp = os.path.basename(temp_path(str(tmp_path / ("é" * 125))))
    assert len(os.fsencode(tmp)) <= 255 and f".{os.getpid()}." in tmp
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / tmp.replace(f".{os.getpid()}.", f".{dead.stdout.strip()}.")).write_bytes(b"a killed writer's")
    assert len(remove_stale_temp_files(str(tmp_path))) == 1 and not os.listdir(tmp_path)


def _saved(tmp_path, variant, head="FPN", *opts, record=True):
    """A tiny detector's checkpoint; ``record=False``: without its spec, as a file made elsewhere."""
    model = build_model(tiny_detector_cfg(variant, head, *opts))
    RGSCheckpointer(model, str(tmp_path)).save("m")
    path = str(tmp_path / "m.pth")
    if not record:
        state = torch.load(path, weights_only=True)
        state["model"] = {k: v for k, v in state["model"].items() if not k.endswith(RECORD_KEY)}
        torch.save(state, path)
    return path


@pytest.mark.parametrize("record", [True, False])
def test_strict_load_refuses_a_checkpoint_for_another_variant(tmp_path, record):
    path = _saved(tmp_path, "original", record=record)
    model = build_model(tiny_detector_cfg("Res-RGS"))
    with pytest.raises(IncompatibleCheckpointError) as err:
        RGSCheckpointer(model).load(path)
    if record:  # the recorded spec is compared first, before anything is loaded
        assert "variant ('original' in the weights, 'Res-RGS' in the model), gn_groups (0 in the weights, 8 in the " \
            "model); they were made for original-26, the model's backbone.bottom_up is Res-RGS-26" in str(err.value)
    else:
        assert "missing (" in str(err.value) and "shortcut_norm" in str(err.value)


def test_strict_load_refuses_mis_shaped_backbone_tensors(tmp_path):
    path = _saved(tmp_path, "Res-RGS", record=False)
    model = build_model(tiny_detector_cfg("Res-RGS", "FPN", "MODEL.RESNETS.RES2_OUT_CHANNELS", 128))
    with pytest.raises(IncompatibleCheckpointError) as err:
        RGSCheckpointer(model).load(path)
    assert "refusing a partial load" in str(err.value) and "mis-shaped (" in str(err.value)


def test_c4_checkpoint_missing_backbone_tensors_is_refused(tmp_path):
    """The C4 backbone's keys are ``backbone.res2..4`` (no ``bottom_up``): they are strict too."""
    path = _saved(tmp_path, "Res-RGS", "C4")
    state = torch.load(path, weights_only=True)
    removed = [k for k in state["model"] if k.startswith("backbone.res3.1.")]
    for k in removed:
        del state["model"][k]
    torch.save(state, path)
    model = build_model(tiny_detector_cfg("Res-RGS", "C4"))
    with pytest.raises(IncompatibleCheckpointError, match=r"backbone\.res3\.1"):
        RGSCheckpointer(model).load(path)


def test_c4_head_res5_is_strict_too(tmp_path):
    path = _saved(tmp_path, "Res-RGS", "C4")
    state = torch.load(path, weights_only=True)
    del state["model"]["roi_heads.res5.1.shortcut_norm.weight"]
    torch.save(state, path)
    with pytest.raises(IncompatibleCheckpointError, match=r"roi_heads\.res5\.1\.shortcut_norm\.weight"):
        RGSCheckpointer(build_model(tiny_detector_cfg("Res-RGS", "C4"))).load(path)


@pytest.mark.parametrize("head", ["FPN", "C4"])
def test_a_new_class_count_loads_the_backbone_and_skips_the_predictor(tmp_path, head, caplog):
    path = _saved(tmp_path, "b-RGS", head, "MODEL.ROI_HEADS.NUM_CLASSES", 5)
    model = build_model(tiny_detector_cfg("b-RGS", head, "MODEL.ROI_HEADS.NUM_CLASSES", 3))
    before = model.roi_heads.box_predictor.cls_score.weight.clone()
    RGSCheckpointer(model).load(path)
    saved = torch.load(path, weights_only=True)["model"]
    backbone = [k for k in saved if k.startswith("backbone.")]
    assert backbone and all(torch.equal(model.state_dict()[k], saved[k]) for k in backbone)
    assert torch.equal(model.roi_heads.box_predictor.cls_score.weight, before)
    assert "roi_heads.box_predictor.cls_score.weight" in caplog.text and "another class count" in caplog.text


def test_imagenet_style_file_with_a_tensor_the_backbone_lacks_is_refused(tmp_path):
    model = build_model(tiny_detector_cfg("original"))
    backbone = {
        k[len("backbone.bottom_up."):]: v for k, v in model.state_dict().items() if k.startswith("backbone.bottom_up.")
    }
    backbone["res2.1.shortcut_norm.weight"] = torch.ones(64)  # a b-RGS tensor
    path = tmp_path / "imagenet.pth"
    torch.save({"model": backbone, "__author__": "x", "matching_heuristics": True}, path)
    with pytest.raises(IncompatibleCheckpointError, match="does not have.*res2.1.shortcut_norm.weight"):
        RGSCheckpointer(model).load(str(path))


def test_missing_weights_file_says_how_to_make_one(tmp_path):
    model = build_model(tiny_detector_cfg("Res-RGS"))
    with pytest.raises(WeightsError) as err:
        RGSCheckpointer(model).load(str(tmp_path / "nope.pth"))
    assert "python -m rgs_detectron.cli.convert" in str(err.value) and "nope.pth" in str(err.value)


@pytest.mark.parametrize("content,words", [
    (b"", "empty file"),
    (b"\x80\x02garbage that is not a checkpoint", "cannot read weights file"),
    (b"PK\x03\x04 truncated zip", "cannot read weights file"),
])
@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_empty_or_garbage_weights_are_named(tmp_path, content, words, suffix):
    path = tmp_path / f"w{suffix}"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as err:
        RGSCheckpointer(build_model(tiny_detector_cfg("Res-RGS"))).load(str(path))
    assert words in str(err.value) and str(path) in str(err.value)


class _Poison:
    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}", ))


def test_poisoned_pkl_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    poison = _Poison()
    poison.marker = str(marker)
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"x": poison}, "__author__": "evil"}, f)
    with pytest.raises(WeightsError, match="refused and nothing in it ran"):
        RGSCheckpointer(build_model(tiny_detector_cfg("Res-RGS"))).load(str(path))
    assert not marker.exists()


def test_numpy_pkl_in_detectron2_layout_still_loads(tmp_path):
    model = build_model(tiny_detector_cfg("b-RGS"))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": state, "__author__": "someone"}, f)
    fresh = build_model(tiny_detector_cfg("b-RGS"))
    RGSCheckpointer(fresh).load(str(path))
    assert all(np.array_equal(fresh.state_dict()[k].numpy(), v) for k, v in state.items())


def test_last_checkpoint_naming_a_deleted_file_is_explained(tmp_path):
    (tmp_path / "last_checkpoint").write_text("model_0000199.pth")
    with pytest.raises(WeightsError, match="model_0000199.pth.*not in"):
        RGSCheckpointer(None, str(tmp_path)).get_checkpoint_file()


def test_full_checkpoint_round_trip(tmp_path):
    path = _saved(tmp_path, "b-RGS")
    model = build_model(tiny_detector_cfg("b-RGS"))
    RGSCheckpointer(model).load(path)
    saved = torch.load(path, weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_an_imagenet_classifiers_head_in_a_backbone_file_is_allowed(tmp_path):
    """Detectron2's own ImageNet .pkl files hold the classifier's fc1000 beside the backbone: the backbone loads, every
    tensor of it from the file, and the head is left out (not refused as a tensor the model does not have)."""
    torch.manual_seed(0)
    model = build_model(tiny_detector_cfg("original"))
    backbone = {
        k[len("backbone.bottom_up."):]: v.numpy() for k, v in model.state_dict().items()
        if k.startswith("backbone.bottom_up.")
    }
    head = {"fc1000_w": np.ones((1000, 512), dtype=np.float32), "fc1000_b": np.ones(1000, dtype=np.float32)}
    path = tmp_path / "R-26.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {**backbone, **head}, "__author__": "someone", "matching_heuristics": True}, f)
    torch.manual_seed(1)
    other = build_model(tiny_detector_cfg("original"))
    state = other.state_dict()
    assert not all(np.array_equal(state["backbone.bottom_up." + k].numpy(), v) for k, v in backbone.items())
    RGSCheckpointer(other).load(str(path))
    state = other.state_dict()
    for k, v in backbone.items():
        assert np.array_equal(state["backbone.bottom_up." + k].numpy(), v), k


def test_bad_device_names_are_usage_errors():
    from rgs_detectron.config import resolve_device
    from rgs_detectron.errors import ConfigError

    for name in ("cuda:x", "gpu", "cuda:"):
        with pytest.raises(ConfigError, match="choose cpu, cuda, cuda:N or auto"):
            resolve_device(name)


# --------------------------------------------------------------------------- recorded specs


def test_twin_variants_never_load_into_each_other(tmp_path):
    """d-RGS and Res-RGS (b-RGS and GS) have the same tensors: the spec the checkpoint records tells them apart."""
    for variant, twin in (("Res-RGS", "d-RGS"), ("GS", "b-RGS")):
        path = _saved(tmp_path, variant)
        with pytest.raises(IncompatibleCheckpointError) as err:
            RGSCheckpointer(build_model(tiny_detector_cfg(twin))).load(path)
        message = str(err.value)
        assert f"they were made for {variant}-26, the model's backbone.bottom_up is {twin}-26" in message
        assert f"do not fit the model's backbone.bottom_up: they differ in variant ({variant!r} in the weights, " \
            f"{twin!r} in the model)" in message
        assert f"MODEL.RGSNET.VARIANT {variant!r}" in message


def test_only_what_decides_the_function_is_compared(tmp_path):
    """BN -> FrozenBN, another shortcut implementation, RG init or res5 dilation load; GroupNorm groups
    (same tensor shapes) and the stride's place do not."""
    path = _saved(tmp_path, "Res-RGS", "FPN", "MODEL.RESNETS.NORM", "BN", "MODEL.RGSNET.SHORTCUT_IMPL", "lean",
                  "MODEL.RGSNET.RG_INIT", "zero")
    from rgs_detectron.modeling import RGSNetSpec
    from rgs_detectron.modeling.spec_record import refuse_other_spec

    RGSCheckpointer(build_model(tiny_detector_cfg("Res-RGS", "FPN", "MODEL.RESNETS.NORM", "FrozenBN"))).load(path)
    spec = RGSNetSpec.create("Res-RGS")
    refuse_other_spec(spec, spec.replace(res5_dilation=2, norm="FrozenBN", shortcut_impl="lean"), "the model")
    for opts, field in ((["MODEL.RGSNET.GN_GROUPS", 4], "gn_groups (8 in the weights, 4 in the model)"),
                        (["MODEL.RESNETS.STRIDE_IN_1X1", True], "stride_in_1x1 (False in the weights, True")):
        with pytest.raises(IncompatibleCheckpointError, match=re.escape(field)):
            RGSCheckpointer(build_model(tiny_detector_cfg("Res-RGS", "FPN", *opts))).load(path)


def test_the_c4_heads_res5_is_compared_too(tmp_path):
    from rgs_detectron.modeling import make_rgsnet_res5

    path = _saved(tmp_path, "Res-RGS", "C4")
    model = build_model(tiny_detector_cfg("Res-RGS", "C4"))
    model.roi_heads.res5 = make_rgsnet_res5(model.backbone.spec.replace(variant="d-RGS"))
    with pytest.raises(IncompatibleCheckpointError, match="the model's roi_heads.res5 is d-RGS-26"):
        RGSCheckpointer(model).load(path)


def test_a_file_without_a_record_loads_with_a_note(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = _saved(tmp_path, "Res-RGS", record=False)
    RGSCheckpointer(build_model(tiny_detector_cfg("Res-RGS"))).load(path)
    assert "record no architecture" in caplog.text and "cannot tell Res-RGS from d-RGS" in caplog.text


# --------------------------------------------------------------------------- MSRA (Caffe2) ImageNet weights


def _msra_r50_layout(tmp_path):
    """A backbone in the layout of Detectron2's ``ImageNetPretrained/MSRA/R-*.pkl``: Caffe2 names, affine-only
    BatchNorms (no running statistics), the classifier's fc1000."""
    from detectron2.checkpoint.c2_model_loading import convert_basic_c2_names

    model = build_model(tiny_detector_cfg("original"))
    prefix = "backbone.bottom_up."
    d2 = {
        k[len(prefix):]: v for k, v in model.state_dict().items()
        if k.startswith(prefix) and not k.endswith(("running_mean", "running_var", "num_batches_tracked", RECORD_KEY))
    }
    c2 = {}
    for name, value in d2.items():
        name = name.replace("stem.conv1.norm.", "res_conv1_bn.").replace("stem.conv1.", "conv1.")
        for a, b in (("shortcut", "branch1"), ("conv1", "branch2a"), ("conv2", "branch2b"), ("conv3", "branch2c")):
            name = re.sub(rf"^(res\d\.\d+)\.{a}\.", rf"\1.{b}.", name)
        name = name.replace(".norm.", "_bn.").replace(".", "_")
        name = re.sub(r"_bn_weight$", "_bn_s", re.sub(r"_bn_bias$", "_bn_b", name))
        c2[re.sub(r"_weight$", "_w", re.sub(r"_bias$", "_b", name))] = value.numpy()
    assert convert_basic_c2_names(list(c2)) == list(d2)  # the layout Detectron2 reads
    c2.update({"fc1000_w": np.zeros((1000, 512), dtype=np.float32), "fc1000_b": np.zeros(1000, dtype=np.float32)})
    path = tmp_path / "R-26.pkl"
    with open(path, "wb") as f:
        pickle.dump(c2, f)
    return str(path)


def test_msra_weights_are_refused_by_res_rgs_and_warned_about_in_an_rgb_original(tmp_path, caplog):
    """Detectron2's `MODEL.WEIGHTS detectron2://ImageNetPretrained/MSRA/R-50.pkl` left in a config: the
    stride's place changes no shape, so only the strict load (RGS variants) and a warning (original) tell."""
    path = _msra_r50_layout(tmp_path)
    with pytest.raises(IncompatibleCheckpointError, match="(?s)refusing a partial load.*shortcut_norm"):
        RGSCheckpointer(build_model(tiny_detector_cfg("Res-RGS", "FPN", "MODEL.RESNETS.NORM", "FrozenBN"))).load(path)
    rgb = ["MODEL.RESNETS.NORM", "FrozenBN", "INPUT.FORMAT", "RGB", "MODEL.RESNETS.STRIDE_IN_1X1", False]
    RGSCheckpointer(build_model(tiny_detector_cfg("original", "FPN", *rgb))).load(path)
    assert "Caffe2 (MSRA) ImageNet weights" in caplog.text
    assert "INPUT.FORMAT RGB, MODEL.PIXEL_STD [58.395, 57.12, 57.375], MODEL.RESNETS.STRIDE_IN_1X1 False" in caplog.text
    caplog.clear()
    msra = [
        "MODEL.RESNETS.NORM", "FrozenBN", "INPUT.FORMAT", "BGR", "MODEL.PIXEL_MEAN", [103.53, 116.28, 123.675],
        "MODEL.PIXEL_STD", [1.0, 1.0, 1.0], "MODEL.RESNETS.STRIDE_IN_1X1", True
    ]
    RGSCheckpointer(build_model(tiny_detector_cfg("original", "FPN", *msra))).load(path)
    assert "Caffe2 (MSRA)" not in caplog.text


# --------------------------------------------------------------------------- your own DefaultTrainer


def test_load_weights_is_the_strict_one_liner_for_a_plain_detectron2_trainer(tmp_path):
    """Detectron2's DefaultTrainer only warns when a plain ResNet meets a Res-RGS backbone;
    rgs_detectron.load_weights refuses it, and loads the right weights for the same trainer to train."""
    import itertools

    from detectron2.engine import DefaultTrainer

    import rgs_detectron

    from common import tiny_batch

    class Trainer(DefaultTrainer):  # a user's trainer: Detectron2's, with their own data

        @classmethod
        def build_train_loader(cls, cfg):
            return itertools.repeat(tiny_batch())

    original = build_model(tiny_detector_cfg("original"))
    resnet = {  # a ResNet made elsewhere: no record
        k[len("backbone.bottom_up."):]: v for k, v in original.state_dict().items()
        if k.startswith("backbone.bottom_up.") and not k.endswith(RECORD_KEY)
    }
    plain = tmp_path / "resnet.pth"
    torch.save({"model": resnet, "__author__": "someone", "matching_heuristics": True}, plain)
    right = _saved(tmp_path, "Res-RGS")
    opts = ["SOLVER.MAX_ITER", 1, "SOLVER.IMS_PER_BATCH", 2, "DATASETS.TEST", (), "OUTPUT_DIR", str(tmp_path / "out")]
    cfg = tiny_detector_cfg("Res-RGS", "FPN", *opts, "MODEL.WEIGHTS", str(plain))
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)  # Detectron2: "not found in the checkpoint", and it would train on
    with pytest.raises(IncompatibleCheckpointError, match="(?s)refusing a partial load.*shortcut_norm"):
        rgs_detectron.load_weights(trainer.model, cfg.MODEL.WEIGHTS)
    rgs_detectron.load_weights(trainer.model, right)
    trainer.train()
    assert trainer.iter == 1 and (tmp_path / "out" / "model_final.pth").exists()


# --------------------------------------------------------------------------- trained models only for inference


@pytest.fixture(scope="module")
def backbone_only(tmp_path_factory):
    """ImageNet-style weights: the tiny Res-RGS backbone alone, with its record (as the converter writes)."""
    folder = tmp_path_factory.mktemp("imagenet")
    model = build_model(tiny_detector_cfg("Res-RGS"))
    prefix = "backbone.bottom_up."
    tensors = {k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    path = folder / "imagenet.pth"
    torch.save(
        {
            "model": tensors, "__author__": "x", "matching_heuristics": True,
            "rgsnet_spec": model.backbone.bottom_up.spec.to_dict()
        }, path)
    return str(path)


def test_load_trained_model_refuses_untrained_heads_for_yacs_and_lazy_configs(tmp_path, backbone_only):
    from rgs_detectron.engine.predictor import load_trained_model
    from rgs_detectron.model_zoo import get_config

    cfg = tiny_detector_cfg("Res-RGS", "FPN", "MODEL.WEIGHTS", backbone_only)
    RGSCheckpointer(build_model(cfg)).load(backbone_only)  # training: heads start from their initialization
    with pytest.raises(IncompatibleCheckpointError) as err:
        load_trained_model(cfg)
    assert "leaves parts of this model untrained" in str(err.value) and "roi_heads.box_predictor" in str(err.value)
    _, weights, other = save_random_detector(tmp_path, "Res-RGS", "FPN", "MODEL.ROI_HEADS.NUM_CLASSES", 3)
    cfg.MODEL.WEIGHTS = weights  # a trained detector, for 3 classes; the config says 10
    with pytest.raises(IncompatibleCheckpointError, match=r"mis-shaped .*cls_score.weight: checkpoint \(4, 64\)"):
        load_trained_model(cfg)
    model = load_trained_model(other)
    assert not model.training

    lazy = get_config("lazy/coco_res_rgs_50_fpn.py")
    lazy.rgsnet.update(depth=26, width_mult=0.25)
    lazy.train.update(device="cpu", init_checkpoint=backbone_only, output_dir=str(tmp_path / "lazy"))
    with pytest.raises(IncompatibleCheckpointError, match="leaves parts of this model untrained"):
        load_trained_model(lazy)
    lazy.train.init_checkpoint = ""
    with pytest.raises(ConfigError, match="train.init_checkpoint is empty"):
        load_trained_model(lazy)


# --------------------------------------------------------------------------- weights paths as Detectron2 reads them


def test_file_urls_and_the_matching_heuristics_query_are_understood(tmp_path, backbone_only):
    """`file:///...` is a local path and `?matching_heuristics=True` Detectron2's query: same checks, same messages."""
    from rgs_detectron.checkpoint import check_weights_file

    full = _saved(tmp_path, "Res-RGS")
    RGSCheckpointer(build_model(tiny_detector_cfg("Res-RGS"))).load(f"file://{full}")
    check_weights_file(f"file://{full}")
    with pytest.raises(WeightsError, match=r"MODEL.WEIGHTS = '/nowhere/x.pth' does not exist"):
        check_weights_file("file:///nowhere/x.pth")
    # A backbone file saved without the flag: the query asks Detectron2 to match its names to the model's.
    data = torch.load(backbone_only, weights_only=True)
    del data["matching_heuristics"]
    bare = tmp_path / "bare.pth"
    torch.save(data, bare)
    check_weights_file(f"{bare}?matching_heuristics=True")
    model = build_model(tiny_detector_cfg("Res-RGS"))
    RGSCheckpointer(model).load(f"{bare}?matching_heuristics=True")
    loaded = model.state_dict()["backbone.bottom_up.res3.1.conv2.weight"]
    assert torch.equal(loaded, data["model"]["res3.1.conv2.weight"])
    with pytest.raises(ConfigError, match=r"unknown query 'matching=1'; Detectron2 understands only"):
        check_weights_file(f"{bare}?matching=1")


def test_a_failed_download_is_one_line(tmp_path):
    """Other URLs stay Detectron2's (it downloads them); a failure names the URL (loopback, nothing listens)."""
    with pytest.raises(WeightsError) as err:
        RGSCheckpointer(build_model(tiny_detector_cfg("Res-RGS"))).load("http://127.0.0.1:9/weights/model.pth")
    message = str(err.value)
    assert message.startswith("cannot download the weights http://127.0.0.1:9/weights/model.pth (URLError")
    assert "\n" not in message and "give its local path" in message


# --------------------------------------------------------------------------- poisoned files, every way in


@pytest.fixture
def poisoned(tmp_path, monkeypatch):
    """``make(path)`` writes a weights file whose unpickling would create a marker file; torch told by its
    environment to unpickle anything it is not told otherwise (torch 2.3-2.5's default)."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "PWNED"

    def make(path):
        evil = _Poison()
        evil.marker = str(marker)
        if path.suffix == ".pkl":
            with open(path, "wb") as f:
                pickle.dump({"model": {"x": evil}, "__author__": "evil"}, f)
        else:
            torch.save({"model_state" if path.suffix == ".pyth" else "model": {"x": evil}, "iteration": 9}, path)
        return str(path)

    yield make
    assert not marker.exists(), "the payload ran"


def assert_refused_cleanly(message):
    """Refused, and without torch's advice to load it again unsafely."""
    assert "refused" in message and "weights_only=False" not in message and "will likely succeed" not in message


class _TinyDataTrainer:
    """The project's trainer on a tiny in-memory batch (the weights are the subject, not the data)."""

    @staticmethod
    def make(cfg):
        import itertools

        from rgs_detectron.engine.trainer import RGSTrainer

        from common import tiny_batch

        class Trainer(RGSTrainer):

            @classmethod
            def build_train_loader(cls, cfg):
                return itertools.repeat(tiny_batch())

        return Trainer(cfg)


@pytest.mark.parametrize("suffix", [".pth", ".pyth", ".pkl"])
def test_a_poisoned_file_never_runs_through_model_weights_resume_or_the_converter(tmp_path, poisoned, suffix, capsys):
    from rgs_detectron.cli import convert as convert_tool

    weights = poisoned(tmp_path / f"weights{suffix}")
    out = tmp_path / "out"
    opts = ["SOLVER.MAX_ITER", 20, "DATASETS.TEST", (), "OUTPUT_DIR", str(out)]
    trainer = _TinyDataTrainer.make(tiny_detector_cfg("Res-RGS", "FPN", *opts, "MODEL.WEIGHTS", weights))
    with pytest.raises(WeightsError) as err:  # MODEL.WEIGHTS
        trainer.resume_or_load(resume=False)
    assert_refused_cleanly(str(err.value))

    poisoned(out / f"model_0000009{suffix}")
    (out / "last_checkpoint").write_text(f"model_0000009{suffix}")
    with pytest.raises(WeightsError) as err:  # --resume: what train_net reads first, then the trainer
        RGSCheckpointer(None, str(out)).last_iteration()
    assert_refused_cleanly(str(err.value))
    with pytest.raises(WeightsError) as err:
        trainer.resume_or_load(resume=True)
    assert_refused_cleanly(str(err.value))

    assert convert_tool.main([weights, str(tmp_path / "converted.pth"), "--variant", "Res-RGS"]) == 1
    assert_refused_cleanly(capsys.readouterr().err)


# --------------------------------------------------------------------------- converted weights under every BN kind


@pytest.fixture(scope="module")
def converted_res_rgs(tmp_path_factory):
    """Converted ImageNet weights (as the converter writes them: no BatchNorm step counters) for the tiny detectors."""
    from rgs_detectron.checkpoint import convert_checkpoint
    from rgs_detectron.classification import RGSNetClassifier
    from rgs_detectron.modeling import RGSNetSpec

    folder = tmp_path_factory.mktemp("converted")
    spec = RGSNetSpec.create("Res-RGS", 26, 0.25)
    torch.save({"state_dict": RGSNetClassifier(spec).state_dict(), "rgsnet_spec": spec.to_dict()}, folder / "c.pth")
    convert_checkpoint(str(folder / "c.pth"), str(folder / "Res-RGS.pth"))
    return str(folder / "Res-RGS.pth")


@pytest.mark.parametrize("norm", ["FrozenBN", "BN", "SyncBN", "nnSyncBN", "naiveSyncBN"])
def test_converted_weights_load_under_every_batch_norm_and_freeze_at(converted_res_rgs, norm, caplog):
    """CONVERT.md names FrozenBN and SyncBN for fine-tuning (the code takes every BatchNorm kind) and FREEZE_AT is
    0-5: BatchNorm's step counters are not weights, so converted files (which hold none) load in every case."""
    for head, freeze_at in [("FPN", f) for f in range(6)] + [("C4", 2)]:
        model = build_model(
            tiny_detector_cfg("Res-RGS", head, "MODEL.RESNETS.NORM", norm, "MODEL.BACKBONE.FREEZE_AT", freeze_at))
        caplog.clear()
        RGSCheckpointer(model).load(converted_res_rgs)
        assert "num_batches_tracked" not in caplog.text, (head, freeze_at)  # nothing "not found" about counters
        state, saved = model.state_dict(), torch.load(converted_res_rgs, weights_only=True)["model"]
        prefix = "backbone.bottom_up." if head == "FPN" else "backbone."
        assert torch.equal(state[prefix + "res3.1.conv2.norm.running_var"], saved["res3.1.conv2.norm.running_var"])


# --------------------------------------------------------------------------- a classifier checkpoint as weights


@pytest.mark.parametrize("layout", ["train_classifier", "torchvision"])
def test_an_unconverted_classifier_checkpoint_is_one_line_with_the_convert_command(tmp_path, layout, capsys):
    from PIL import Image

    from rgs_detectron.classification import RGSNetClassifier
    from rgs_detectron.cli import demo, train_net
    from rgs_detectron.modeling import RGSNetSpec

    spec = RGSNetSpec.create("Res-RGS", 26, 0.25)
    state = RGSNetClassifier(spec).state_dict()
    weights = tmp_path / "model_final.pth"
    torch.save({"state_dict": state, "rgsnet_spec": spec.to_dict()} if layout == "train_classifier" else state, weights)
    config = tmp_path / "tiny.yaml"
    config.write_text(tiny_detector_cfg("Res-RGS").dump())
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    for command in (train_net.main, demo.main):
        argv = ["--config-file", str(config), "MODEL.WEIGHTS", str(weights), "MODEL.DEVICE", "cpu"]
        argv = [*argv[:2], "--eval-only", *argv[2:], "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / "eval")] \
            if command is train_net.main else [*argv[:2], "--input", str(tmp_path / "a.png"), "--output",
                                               str(tmp_path / "demo"), *argv[2:]]
        assert command(argv) == 1
        err = capsys.readouterr().err
        message = err[err.index("error: "):]
        assert message.count("\n") == 1 and "Traceback" not in err
        assert f"{str(weights)!r} is an ImageNet classifier checkpoint" in message
        assert f"python -m rgs_detectron.cli.convert {weights} CONVERTED.pth" in message
