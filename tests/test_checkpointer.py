"""Checkpoints are never half-written; weight loads are never silently partial; no
weights file runs code; unreadable files are named."""
import errno
import os
import pickle
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from detectron2.modeling import build_model

from rgs_detectron.checkpoint import IncompatibleCheckpointError, RGSCheckpointer
from rgs_detectron.errors import DiskFullError, WeightsError
from rgs_detectron.utils.fileio import atomic_write, remove_stale_temp_files

from common import tiny_detector_cfg


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


def test_process_killed_while_saving_leaves_previous_checkpoint_and_a_removable_temp(tmp_path):
    script = KILL_DURING_SAVE.format(tests=os.path.abspath("tests"), out=str(tmp_path))
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


def _saved(tmp_path, variant, head="FPN", *opts):
    model = build_model(tiny_detector_cfg(variant, head, *opts))
    RGSCheckpointer(model, str(tmp_path)).save("m")
    return str(tmp_path / "m.pth")


def test_strict_load_refuses_a_checkpoint_for_another_variant(tmp_path):
    path = _saved(tmp_path, "original")
    model = build_model(tiny_detector_cfg("Res-RGS"))
    with pytest.raises(IncompatibleCheckpointError) as err:
        RGSCheckpointer(model).load(path)
    assert "missing backbone tensors" in str(err.value) and "shortcut_norm" in str(err.value)


def test_strict_load_refuses_mis_shaped_backbone_tensors(tmp_path):
    path = _saved(tmp_path, "Res-RGS")
    model = build_model(tiny_detector_cfg("Res-RGS", "FPN", "MODEL.RESNETS.RES2_OUT_CHANNELS", 128))
    with pytest.raises(IncompatibleCheckpointError) as err:
        RGSCheckpointer(model).load(path)
    assert "mis-shaped backbone tensors" in str(err.value)


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
    backbone = {k[len("backbone.bottom_up."):]: v for k, v in model.state_dict().items()
                if k.startswith("backbone.bottom_up.")}
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
        return (os.system, (f"touch {self.marker}",))


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
    """Detectron2's own ImageNet .pkl files hold the classifier's fc1000 beside the backbone."""
    model = build_model(tiny_detector_cfg("original"))
    backbone = {k[len("backbone.bottom_up."):]: v.numpy() for k, v in model.state_dict().items()
                if k.startswith("backbone.bottom_up.")}
    backbone.update({"fc1000_w": np.zeros((1000, 512), dtype=np.float32), "fc1000_b": np.zeros(1000, dtype=np.float32)})
    path = tmp_path / "R-26.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": backbone, "__author__": "someone", "matching_heuristics": True}, f)
    RGSCheckpointer(build_model(tiny_detector_cfg("original"))).load(str(path))


def test_bad_device_names_are_usage_errors():
    from rgs_detectron.config import resolve_device
    from rgs_detectron.errors import ConfigError

    for name in ("cuda:x", "gpu", "cuda:"):
        with pytest.raises(ConfigError, match="choose cpu, cuda, cuda:N or auto"):
            resolve_device(name)
