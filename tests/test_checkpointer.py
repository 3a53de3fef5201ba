"""Checkpoints are never half-written, and weight loads are never silently partial."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from detectron2.modeling import build_model

from rgs_detectron.checkpointer import IncompatibleCheckpointError, RGSCheckpointer
from rgs_detectron.fileio import atomic_write

from common import tiny_detector_cfg


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")

    def boom(f):
        f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(str(path), boom, mode="w")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_process_killed_while_saving_leaves_previous_checkpoint_as_latest(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        sys.path.insert(0, {os.path.abspath('tests')!r})
        from detectron2.modeling import build_model
        from rgs_detectron.checkpointer import RGSCheckpointer
        from common import tiny_detector_cfg
        model = build_model(tiny_detector_cfg("Res-RGS"))
        ckpt = RGSCheckpointer(model, {str(tmp_path)!r})
        ckpt.save("model_0000009", iteration=9)
        real_save = torch.save
        def dying_save(obj, f, *a, **k):
            f.write(b"PK\\x03\\x04 half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        ckpt.save("model_0000019", iteration=19)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert not (tmp_path / "model_0000019.pth").exists()
    model = build_model(tiny_detector_cfg("Res-RGS"))
    extra = RGSCheckpointer(model, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 9


def _saved(tmp_path, variant):
    model = build_model(tiny_detector_cfg(variant))
    RGSCheckpointer(model, str(tmp_path)).save("m")
    return str(tmp_path / "m.pth")


def test_strict_load_refuses_a_checkpoint_for_another_variant(tmp_path):
    path = _saved(tmp_path, "original")
    model = build_model(tiny_detector_cfg("Res-RGS"))
    with pytest.raises(IncompatibleCheckpointError) as err:
        RGSCheckpointer(model).load(path)
    assert "missing backbone keys" in str(err.value) and "shortcut_norm" in str(err.value)


def test_strict_load_refuses_mis_shaped_tensors(tmp_path):
    path = _saved(tmp_path, "Res-RGS")
    model = build_model(tiny_detector_cfg("Res-RGS", "FPN", "MODEL.RESNETS.RES2_OUT_CHANNELS", 128))
    with pytest.raises(IncompatibleCheckpointError) as err:
        RGSCheckpointer(model).load(path)
    assert "mis-shaped keys" in str(err.value)


def test_missing_checkpoint_file_says_how_to_make_one(tmp_path):
    model = build_model(tiny_detector_cfg("Res-RGS"))
    with pytest.raises(FileNotFoundError) as err:
        RGSCheckpointer(model).load(str(tmp_path / "nope.pth"))
    assert "tools/convert_rgsnet_to_d2.py" in str(err.value)


def test_full_checkpoint_round_trip(tmp_path):
    path = _saved(tmp_path, "b-RGS")
    model = build_model(tiny_detector_cfg("b-RGS"))
    RGSCheckpointer(model).load(path)
    saved = torch.load(path, weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k]), k
