"""train_net end to end on tiny built-in data: COCO and VOC formats, 2-process launch on
the CPU, --eval-only, resuming after SIGKILL (also inside the last save), the OUTPUT_DIR
lock, and the mistakes caught before anything is built. train_net runs in this process
unless a process is the subject: a 2-process launch, a SIGKILL, a second process holding
the lock, a process without CUDA (there, as users run it: tools/train_net.py)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rgs_detectron.cli import train_net as train_net_tool
from rgs_detectron.data.builtin import register_digits
from rgs_detectron.data.digits import generate_digits_dataset

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs/demo/digits_res_rgs.yaml")
TOOL = str(ROOT / "tools/train_net.py")
TINY = [
    "MODEL.DEVICE",
    "cpu",
    "SOLVER.MAX_ITER",
    "6",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.WARMUP_ITERS",
    "2",
    "SOLVER.STEPS",
    "(100,)",
    "SOLVER.BASE_LR",
    "0.01",
    "TEST.EVAL_PERIOD",
    "0",
    "INPUT.MIN_SIZE_TRAIN",
    "(64,)",
    "INPUT.MAX_SIZE_TRAIN",
    "64",
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "64",
    "DATALOADER.NUM_WORKERS",
    "0",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "64",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "32",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",  # an untrained model must still predict something
]
NUM_VAL = 6


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    generate_digits_dataset(root / "rgs_digits", num_train=16, num_val=NUM_VAL, image_size=64, min_scale=14,
                            max_scale=28)
    register_digits(str(root), prefix="rgs_digits_t")  # for the in-process tests (the builtin root is fixed at import)
    return str(root)


IN_PROCESS_DATA = ["DATASETS.TRAIN", "('rgs_digits_t_train',)", "DATASETS.TEST", "('rgs_digits_t_val',)"]


def _env(datasets_root):
    return dict(os.environ, DETECTRON2_DATASETS=datasets_root, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def train_net(*opts, flags=(), config=CONFIG):
    """train_net in this process on the module's datasets (``datasets_root``); returns its exit status."""
    return train_net_tool.main(["--config-file", config, *flags, *TINY, *IN_PROCESS_DATA, *opts])


def train_net_process(datasets_root, *opts, flags=(), timeout=600, **popen):
    """The real entry point (the tools/ wrapper, as users run it) in a process of its own, on the builtin names."""
    cmd = [sys.executable, TOOL, "--config-file", CONFIG, *flags, *TINY, *opts]
    if popen:
        return subprocess.Popen(cmd, env=_env(datasets_root), start_new_session=True, **popen)
    return subprocess.run(cmd, env=_env(datasets_root), capture_output=True, text=True, timeout=timeout)


def _log(folder):
    return (folder / "log.txt").read_text()


def _copypaste(text):
    """The AP row Detectron2 prints after evaluation (last one in the log)."""
    rows = re.findall(r"copypaste: ([-\d.,nan]+)\n", text)
    return rows[-1]


def test_train_and_evaluate_coco_format(datasets_root, tmp_path):
    out = tmp_path / "coco"
    assert train_net("OUTPUT_DIR", str(out), "TEST.COCO_EVAL_ENGINE", "pycocotools") == 0
    log = _log(out)
    assert "Evaluation results for bbox" in log and "copypaste: AP,AP50,AP75,APs,APm,APl" in log
    for name in ("model_final.pth", "metrics.json", "last_checkpoint", "inference/coco_instances_results.json"):
        assert (out / name).exists(), name
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())
    rows = [json.loads(line) for line in open(out / "metrics.json")]
    assert rows[-1]["iteration"] == 6 and "bbox/AP" in rows[-1]  # eval after the last step

    # --eval-only on the saved checkpoint gives the same numbers (written into a folder of its own).
    assert train_net("MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "eval"),
                     "TEST.COCO_EVAL_ENGINE", "pycocotools", flags=["--eval-only"]) == 0
    (evaluation, ) = (tmp_path / "eval").glob("eval_*")
    assert _copypaste(_log(evaluation)) == _copypaste(log)


def test_train_and_evaluate_voc_format(datasets_root, tmp_path):
    out = tmp_path / "voc"
    assert train_net("DATASETS.TRAIN", "('rgs_digits_t_voc_train',)", "DATASETS.TEST", "('rgs_digits_t_voc_val',)",
                     "OUTPUT_DIR", str(out), config=str(ROOT / "configs/demo/digits_res_rgs_voc.yaml")) == 0
    log = _log(out)
    assert "Evaluating rgs_digits_t_voc_val using 2007 metric" in log
    assert re.search(r"copypaste: AP,AP50,AP75", log)
    assert (out / "model_final.pth").exists()


@pytest.mark.slow
@pytest.mark.serial
def test_two_process_launch_on_cpu_gathers_both_ranks(datasets_root, tmp_path):
    out = tmp_path / "ddp"
    r = train_net_process(datasets_root, "OUTPUT_DIR", str(out), "TEST.COCO_EVAL_ENGINE", "pycocotools",
                          flags=["--num-gpus", "2", "--dist-url", "auto"])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]  # the tools/ wrapper's exit status
    log = r.stdout + r.stderr
    assert "Evaluation results for bbox" in log
    assert "world size: 2" in log.lower() or "Rank of current process: 1" in log
    preds = torch.load(out / "inference" / "instances_predictions.pth", weights_only=False)
    assert sorted(p["image_id"] for p in preds) == list(range(17, 17 + NUM_VAL))  # every val image, from both ranks


def _kill_when(proc, ready, what):
    """SIGKILL ``proc``'s process group as soon as ``ready()``; fails if it ended first."""
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ready():
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"{what} finished before it could be killed"


@pytest.mark.slow
def test_sigkill_then_resume_continues_from_last_complete_checkpoint(datasets_root, tmp_path):
    out = tmp_path / "kill"
    opts = ["SOLVER.MAX_ITER", "24", "SOLVER.CHECKPOINT_PERIOD", "4", "OUTPUT_DIR", str(out)]
    proc = train_net_process(datasets_root, *opts, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tag = out / "last_checkpoint"
    _kill_when(proc, lambda: tag.exists() and tag.read_text().strip() >= "model_0000007.pth", "training")
    last = tag.read_text().strip()
    last_iter = int(last[len("model_"):-len(".pth")])
    assert torch.load(out / last, weights_only=True)["iteration"] == last_iter

    assert train_net(*opts, flags=["--resume"]) == 0  # in this process: only the kill needs another
    assert f"Starting training from iteration {last_iter + 1}" in _log(out)
    assert (out / "model_final.pth").exists()
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 23


@pytest.mark.slow
def test_overwrite_then_kill_then_resume_never_continues_the_previous_run(datasets_root, tmp_path):
    """A finished run; a new one with --overwrite killed (SIGKILL) before its first checkpoint; --resume: the new run
    starts over, and the previous run's model is neither reported as the new one's nor lost."""
    from rgs_detectron import get_rgsnet_cfg
    from rgs_detectron.engine import RGSTrainer

    out = tmp_path / "run"
    opts = [
        "SOLVER.MAX_ITER", "24", "SOLVER.CHECKPOINT_PERIOD", "1000", "TEST.COCO_EVAL_ENGINE", "pycocotools",
        "OUTPUT_DIR",
        str(out)
    ]
    out.mkdir()
    finished = RGSTrainer(get_rgsnet_cfg(CONFIG, [*TINY, *opts, *IN_PROCESS_DATA]))
    finished.iter = finished._trainer.iter = 23  # as at the end of a finished run
    finished.checkpointer.save("model_final", origin="the previous run")  # and last_checkpoint
    old = {k: v.clone() for k, v in finished.model.state_dict().items()}
    proc = train_net_process(datasets_root, *opts, flags=["--overwrite"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    log = out / "log.txt"
    _kill_when(proc, lambda: log.exists() and "Starting training from iteration 0" in log.read_text(), "training")

    assert train_net(*opts, flags=["--resume"]) == 0
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert "origin" not in final and final["iteration"] == 23  # trained by the new run, all 24 steps
    assert not all(torch.equal(final["model"][k], old[k]) for k in final["model"])  # not the old model
    (previous, ) = [p.parent for p in out.glob("previous_run_*/model_final.pth")]  # the killed run's log: another
    assert torch.load(previous / "model_final.pth", weights_only=True)["origin"] == "the previous run"
    assert (previous / "last_checkpoint").read_text() == "model_final.pth"


HOLD_LOCK = """
import sys, time
from rgs_detectron.utils.output_lock import output_dir_lock
lock = output_dir_lock(sys.argv[1])  # kept: a collected generator would let go of the lock
lock.__enter__()
print("locked", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_one_run_per_output_dir_and_a_killed_holder_blocks_nothing(datasets_root, tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert train_net("OUTPUT_DIR", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "is in use by another run (pid" in err, err[-2000:]
    assert not (tmp_path / "last_checkpoint").exists()
    holder.kill()  # SIGKILL: the kernel drops its lock
    holder.wait()
    assert train_net("OUTPUT_DIR", str(tmp_path)) == 0
    assert (tmp_path / "model_final.pth").exists()


def test_missing_dataset_fails_before_training(tmp_path, capsys):
    register_digits(str(tmp_path / "empty"), prefix="rgs_digits_missing")  # as the builtin names, with no files
    argv = [
        "--config-file", CONFIG, *TINY, "DATASETS.TRAIN", "('rgs_digits_missing_train',)", "DATASETS.TEST",
        "('rgs_digits_missing_val',)", "OUTPUT_DIR",
        str(tmp_path / "o")
    ]
    assert train_net_tool.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "rgs_digits_missing_train" in err
    assert "python -m rgs_detectron.cli.make_digits" in err


def test_missing_weights_fail_before_training(tmp_path, datasets_root, capsys):
    assert train_net("MODEL.WEIGHTS", str(tmp_path / "imagenet.pth"), "OUTPUT_DIR", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert "python -m rgs_detectron.cli.convert" in err and "imagenet.pth" in err


# ------------------------------------------------------------------ caught before anything is built (in-process)


@pytest.mark.parametrize("opts,status,words", [
    (["SOLVER.CHECKPOINT_PERIOD", "0"], 2, "SOLVER.CHECKPOINT_PERIOD = 0 is invalid"),
    (["SOLVER.MAX_ITER", "-5"], 2, "SOLVER.MAX_ITER = -5 is invalid"),
    (["MODEL.ROI_HEADS.NUM_CLASSES", "3"], 2, "NUM_CLASSES = 3, but dataset 'rgs_digits_t_train' has 10 classes"),
    (["MODEL.BACKBONE.NAME", "build_rgsnet_backbone"], 2, "FPN heads (p2..p6) need build_rgsnet_fpn_backbone"),
    (["MODEL.RGSNET.VARIANT", "Res-RGX"], 2, "MODEL.RGSNET.VARIANT) = 'Res-RGX' is invalid"),
    (["SOLVER.AMP.ENABLED", "True"], 2, "needs CUDA"),
    (["MODEL.NO_SUCH_KEY", "1"], 2, "bad config override: Non-existent key: MODEL.NO_SUCH_KEY"),
    (["DATASETS.INVALID_BOXES", "ignore"], 2, "DATASETS.INVALID_BOXES = 'ignore' is invalid"),
    (["MODEL.ROI_HEADS.NUM_CLASSES", "20"], 2, "NUM_CLASSES = 20, but test dataset 'rgs_digits_t_val' has 10 classes, "
     "so its evaluation would fail"),
])
def test_config_mistakes_are_one_line_with_the_key(datasets_root, tmp_path, monkeypatch, capsys, opts, status, words):
    argv = ["--config-file", CONFIG, *TINY, *IN_PROCESS_DATA, "OUTPUT_DIR", str(tmp_path), *opts]
    assert train_net_tool.main(argv) == status
    err = capsys.readouterr().err
    assert err.startswith("train_net: error:") and words in err and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())  # nothing was started


def test_a_full_disk_is_one_line_before_anything_is_written(datasets_root, tmp_path, monkeypatch, capsys):
    """It left three 'Logging error' tracebacks and a 0-byte config.yaml behind."""
    from types import SimpleNamespace

    monkeypatch.setattr("shutil.disk_usage", lambda path: SimpleNamespace(free=0))
    out = tmp_path / "out"
    argv = ["--config-file", CONFIG, *TINY, *IN_PROCESS_DATA, "OUTPUT_DIR", str(out)]
    assert train_net_tool.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("train_net: error:") and f"{str(out)!r} has 0 MiB free and this run needs about 64 MiB" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_every_problem_is_reported_in_one_run(tmp_path, capsys):
    """Training data, test data and weights: one failed start names all three, not three failed starts."""
    from rgs_detectron.data.builtin import register_digits

    register_digits(str(tmp_path / "nowhere"), prefix="rgs_digits_nowhere")
    argv = [
        "--config-file", CONFIG, *TINY, "DATASETS.TRAIN", "('rgs_digits_nowhere_train',)", "DATASETS.TEST",
        "('rgs_digits_nowhere_val',)", "MODEL.WEIGHTS",
        str(tmp_path / "imagenet.pth"), "SOLVER.CHECKPOINT_PERIOD", "0", "OUTPUT_DIR",
        str(tmp_path / "o")
    ]
    assert train_net_tool.main(argv) == 2  # the first problem's status: a config value
    err = capsys.readouterr().err
    assert err.startswith("train_net: error: 3 problems, found before anything was built:")
    assert "SOLVER.CHECKPOINT_PERIOD = 0 is invalid" in err and "imagenet.pth" in err
    assert "dataset 'rgs_digits_nowhere_train' needs" in err and "dataset 'rgs_digits_nowhere_val' needs" in err


def test_eval_only_with_more_classes_than_the_test_set_is_refused_before_inference(datasets_root, tmp_path, capsys):
    weights = tmp_path / "model.pth"
    weights.write_bytes(b"not read: the class count is refused first")
    argv = [
        "--config-file", CONFIG, "--eval-only", *TINY, *IN_PROCESS_DATA, "MODEL.ROI_HEADS.NUM_CLASSES", "11",
        "MODEL.WEIGHTS",
        str(weights), "OUTPUT_DIR",
        str(tmp_path / "o")
    ]
    assert train_net_tool.main(argv) == 2
    err = capsys.readouterr().err
    assert "test dataset 'rgs_digits_t_val' has 10 classes" in err and "set MODEL.ROI_HEADS.NUM_CLASSES 10" in err


def test_eval_only_without_weights_is_refused(datasets_root, tmp_path, monkeypatch, capsys):
    argv = ["--config-file", CONFIG, "--eval-only", *TINY, *IN_PROCESS_DATA, "OUTPUT_DIR", str(tmp_path)]
    assert train_net_tool.main(argv) == 2
    assert "randomly initialised model" in capsys.readouterr().err


def test_cuda_requested_but_unusable_says_why(datasets_root, tmp_path, monkeypatch, capsys):
    """Simulated: a driver too old for this torch build. Never a silent switch to the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def init():
        raise RuntimeError("The NVIDIA driver on your system is too old (found version 12020).")

    monkeypatch.setattr(torch.cuda, "init", init)
    argv = [
        "--config-file", CONFIG, "--num-gpus", "8", *TINY, *IN_PROCESS_DATA, "MODEL.DEVICE", "cuda", "OUTPUT_DIR",
        str(tmp_path)
    ]
    assert train_net_tool.main(argv) == 1
    err = capsys.readouterr().err
    assert "driver on your system is too old" in err and "MODEL.DEVICE cpu" in err and "8 process(es)" in err


def test_lazy_config_cuda_error_names_the_lazy_setting(tmp_path, monkeypatch, capsys):
    from rgs_detectron.cli import lazy_train_net

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = [
        "--config-file",
        str(ROOT / "configs/lazy/coco_res_rgs_50_fpn.py"), "train.device=cuda", "train.init_checkpoint=",
        f"train.output_dir={tmp_path}"
    ]
    assert lazy_train_net.main(argv) == 1
    err = capsys.readouterr().err
    assert "needs CUDA" in err and "run on the CPU with train.device=cpu." in err and "MODEL.DEVICE" not in err


@pytest.mark.slow
def test_cuda_hidden_from_a_real_process_fails_clearly(datasets_root, tmp_path):
    env = dict(_env(datasets_root), CUDA_VISIBLE_DEVICES="")
    cmd = [
        sys.executable, TOOL, "--config-file", CONFIG, *TINY, "MODEL.DEVICE", "cuda", "OUTPUT_DIR",
        str(tmp_path / "o")
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "needs CUDA" in r.stderr and "Traceback" not in r.stderr


def test_resume_past_max_iter_is_refused(datasets_root, tmp_path, monkeypatch, capsys):
    from detectron2.modeling import build_model

    from rgs_detectron.checkpoint import RGSCheckpointer

    from common import tiny_detector_cfg

    RGSCheckpointer(build_model(tiny_detector_cfg()), str(tmp_path)).save("model_0000019", iteration=19)
    argv = ["--config-file", CONFIG, "--resume", *TINY, *IN_PROCESS_DATA, "OUTPUT_DIR", str(tmp_path)]
    assert train_net_tool.main(argv) == 2
    assert "at iteration 19, past SOLVER.MAX_ITER = 6" in capsys.readouterr().err


def test_a_new_run_never_replaces_another_runs_checkpoints(datasets_root, tmp_path, capsys):
    from detectron2.modeling import build_model

    from rgs_detectron.checkpoint import RGSCheckpointer

    from common import tiny_detector_cfg

    RGSCheckpointer(build_model(tiny_detector_cfg()), str(tmp_path)).save("model_0000003", iteration=3)
    argv = ["--config-file", CONFIG, *TINY, *IN_PROCESS_DATA, "OUTPUT_DIR", str(tmp_path)]
    assert train_net_tool.main(argv) == 2
    err = capsys.readouterr().err
    assert "holds another run (last_checkpoint, model_0000003.pth): --resume continues it, --overwrite" in err
    assert (tmp_path / "model_0000003.pth").exists() and not (tmp_path / "model_final.pth").exists()


@pytest.mark.parametrize("flags", [[], ["--resume"]], ids=["new_run", "resume_with_nothing_to_resume"])
def test_a_finished_model_is_never_replaced_without_overwrite(datasets_root, tmp_path, capsys, flags):
    """model_final.pth and no last_checkpoint (copied there, or the tag deleted): still another run's model."""
    (tmp_path / "model_final.pth").write_bytes(b"a finished model")
    argv = ["--config-file", CONFIG, *flags, *TINY, *IN_PROCESS_DATA, "OUTPUT_DIR", str(tmp_path)]
    assert train_net_tool.main(argv) == 2
    err = capsys.readouterr().err
    assert "holds another run (model_final.pth): --resume continues it, --overwrite starts a new run" in err
    assert ("--resume found no last_checkpoint" in err) == bool(flags)
    assert (tmp_path / "model_final.pth").read_bytes() == b"a finished model"
    assert train_net_tool.main(["--resume", "--overwrite", *argv]) == 2
    assert "--resume continues a run and --overwrite starts a new one" in capsys.readouterr().err


@pytest.mark.parametrize("opts,words", [
    (["SOLVER.REFERENCE_WORLD_SIZE", "8", "SOLVER.IMS_PER_BATCH", "4"
      ], "does not divide among SOLVER.REFERENCE_WORLD_SIZE"),
    (["MODEL.RESNETS.OUT_FEATURES", "['res2', 'res3', 'res4']"], "needs a feature 'res5' that is not produced"),
    (["DATASETS.TEST", "('rgs_test_no_evaluator',)"], "evaluator_type 'mystery', which no evaluator here takes"),
])
def test_more_mistakes_caught_before_training(datasets_root, tmp_path, capsys, opts, words):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if "rgs_test_no_evaluator" not in DatasetCatalog.list():
        DatasetCatalog.register("rgs_test_no_evaluator", lambda: [])
        MetadataCatalog.get("rgs_test_no_evaluator").evaluator_type = "mystery"
    argv = ["--config-file", CONFIG, *TINY, *IN_PROCESS_DATA, "OUTPUT_DIR", str(tmp_path), *opts]
    assert train_net_tool.main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err


# ------------------------------------------------------------------ a diverging run, and the last save killed


def test_divergence_says_what_to_lower(datasets_root, tmp_path, capsys):
    assert train_net("SOLVER.BASE_LR", "1e6", "SOLVER.WARMUP_ITERS", "0", "SOLVER.MAX_ITER", "30", "OUTPUT_DIR",
                     str(tmp_path)) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("train_net: error: training diverged") and "Lower SOLVER.BASE_LR (now 1000000.0)" in last


KILL_IN_FINAL_SAVE = """
import os, runpy, signal, sys, torch
real_save = torch.save
saves_of_last = []
def save(obj, f, *a, **k):
    if isinstance(obj, dict) and obj.get("iteration") == 5:
        saves_of_last.append(1)
        if len(saves_of_last) == 2:  # model_0000005 is written, model_final is being written
            f.write(b"PK half")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *a, **k)
torch.save = save
sys.argv = ["train_net", *sys.argv[1:]]
runpy.run_module("rgs_detectron.cli.train_net", run_name="__main__")
"""


@pytest.mark.slow
def test_killed_while_writing_model_final_then_resume_writes_it(datasets_root, tmp_path):
    opts = ["SOLVER.CHECKPOINT_PERIOD", "3", "OUTPUT_DIR", str(tmp_path)]
    cmd = [sys.executable, "-c", KILL_IN_FINAL_SAVE, "--config-file", CONFIG, *TINY, *opts]
    r = subprocess.run(cmd, env=_env(datasets_root), capture_output=True, text=True, timeout=600)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert not (tmp_path / "model_final.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000005.pth"
    assert [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # the killed write's leftover

    killed_log = len(_log(tmp_path))
    assert train_net(*opts, flags=["--resume"]) == 0  # in this process: only the kill needs another
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert final["iteration"] == 5 and final["trainer"]["iteration"] == 5  # a later resume starts at 6
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    assert "Evaluation results for bbox" in _log(tmp_path)[killed_log:]


def test_corrupt_training_annotations_are_named(tmp_path, capsys):
    from detectron2.data.datasets import register_coco_instances

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    bad = root / "train.json"
    bad.write_text('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [], "categories": [')
    register_coco_instances("rgs_test_corrupt_train", {}, str(bad), str(root / "images"))
    argv = [
        "--config-file", CONFIG, *TINY, "DATASETS.TRAIN", "('rgs_test_corrupt_train',)", "DATASETS.TEST", "()",
        "OUTPUT_DIR",
        str(tmp_path / "o")
    ]
    assert train_net_tool.main(argv) == 1
    err = capsys.readouterr().err
    assert "cannot load training data ['rgs_test_corrupt_train']" in err and "train.json" in err


def test_a_corrupt_image_read_in_a_worker_process_is_one_line_naming_it(tmp_path, capsys):
    """DATALOADER.NUM_WORKERS 1: torch re-raises the worker's error with its whole traceback as the text."""
    import numpy as np
    from PIL import Image

    from detectron2.data.datasets import register_coco_instances

    Image.fromarray(np.full((64, 64, 3), 128, dtype=np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG truncated")
    images = [{"id": i, "file_name": n, "width": 64, "height": 64} for i, n in ((1, "good.png"), (2, "bad.png"))]
    anns = [
        {"id": i, "image_id": i, "category_id": 1, "bbox": [8, 8, 30, 30], "area": 900, "iscrowd": 0} for i in (1, 2)
    ]
    (tmp_path / "train.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}))
    register_coco_instances("rgs_test_corrupt_image", {}, str(tmp_path / "train.json"), str(tmp_path))
    argv = [
        "--config-file", CONFIG, *TINY, "DATALOADER.NUM_WORKERS", "1", "DATASETS.TRAIN", "('rgs_test_corrupt_image',)",
        "DATASETS.TEST", "()", "OUTPUT_DIR",
        str(tmp_path / "o")
    ]
    assert train_net_tool.main(argv) == 1
    err = capsys.readouterr().err
    message = err[err.index("train_net: error:"):]
    assert message.startswith(f"train_net: error: cannot read image {tmp_path / 'bad.png'}: ")
    assert len(message.strip().splitlines()) == 1, message  # not the worker's traceback


@pytest.fixture
def builtin_digits_here(datasets_root, monkeypatch):
    """DETECTRON2_DATASETS is the module's datasets, and this process's builtin rgs_digits_* names point there, as
    an import under it registers them (the names found at import are put back afterwards)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    names = [n for n in DatasetCatalog.list() if re.fullmatch(r"rgs_digits_(voc_)?(train|val)", n)]
    found = {n: (DatasetCatalog[n], MetadataCatalog[n]) for n in names}  # the entries themselves, not .get()'s
    for catalog in (DatasetCatalog, MetadataCatalog):
        for name in names:
            catalog.remove(name)
    register_digits(datasets_root)
    for key, value in _env(datasets_root).items():
        monkeypatch.setenv(key, value)
    yield
    for name, (dataset, metadata) in found.items():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
        DatasetCatalog[name], MetadataCatalog[name] = dataset, metadata


@pytest.mark.slow
def test_the_digits_demo_leaves_its_log_curves_pictures_and_result(builtin_digits_here, tmp_path, capsys):
    """digits_demo (make demo) with the test's tiny settings: train_net in its own process, then what the README
    lists: the log with the AP table, metrics.json, curves.png, predictions/*.png and result.json."""
    from rgs_detectron.cli import digits_demo

    argv = ["--device", "cpu", "--output", str(tmp_path), *TINY[2:], "SEED", "1"]
    assert digits_demo.main(argv) == 0, capsys.readouterr().err[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["variant"] == "Res-RGS" and result["seed"] == 1 and 0 <= result["AP"] <= 100
    assert "copypaste: AP,AP50" in (tmp_path / "log.txt").read_text()
    assert (tmp_path / "curves.png").stat().st_size and len(result["predictions"]) == 4
    assert all(os.path.isfile(path) for path in result["predictions"])


def test_a_yaml_config_never_runs_code_in_train_net(tmp_path, capsys):
    """A Python tag in a config's _BASE_ is refused before anything runs (Detectron2 would unsafe_load it)."""
    marker = tmp_path / "MARKER"
    (tmp_path / "base.yaml").write_text(f'SEED: !!python/object/apply:os.system ["touch {marker}"]\n')
    (tmp_path / "config.yaml").write_text('_BASE_: "base.yaml"\n')
    assert train_net_tool.main(["--config-file", str(tmp_path / "config.yaml"), "OUTPUT_DIR", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert err.startswith("train_net: error: config file ") and "base.yaml, line 1 (inherited by" in err
    assert "!!python/object/apply:os.system is refused" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ a run's record is never written over


def _finished_run(out, *opts):
    """A finished run in ``out`` as train_net leaves it: model_final.pth (and last_checkpoint) saved by the trainer, and
    the run's record (config, log, metrics, evaluation results), each with a text of its own. Returns that record."""
    from rgs_detectron import get_rgsnet_cfg
    from rgs_detectron.engine import RGSTrainer

    out.mkdir()
    trainer = RGSTrainer(get_rgsnet_cfg(CONFIG, [*TINY, *IN_PROCESS_DATA, *opts, "OUTPUT_DIR", str(out)]))
    trainer.iter = trainer._trainer.iter = 5
    trainer.checkpointer.save("model_final")
    (out / "inference").mkdir()
    record = {
        "config.yaml": "the run's config", "log.txt": "the run's log", "metrics.json": "the run's metrics",
        "inference/coco_instances_results.json": "the run's results"
    }
    for name, text in record.items():
        (out / name).write_text(text)
    return {**record, "model_final.pth": (out / "model_final.pth").read_bytes(), "last_checkpoint": "model_final.pth"}


def _unchanged(out, record):
    return all((out / name).read_bytes() == (text if isinstance(text, bytes) else text.encode())
               for name, text in record.items())


def test_eval_only_writes_into_a_folder_of_its_own_never_over_the_run(datasets_root, tmp_path, capsys):
    """--eval-only into a training run's folder (the README's own example) replaced its config.yaml and final
    inference/ results and appended to its log: it writes into OUTPUT_DIR/eval_<time>/, the run stays whole."""
    out = tmp_path / "run"
    record = _finished_run(out)
    assert train_net("OUTPUT_DIR", str(out), "MODEL.WEIGHTS", str(out / "model_final.pth"), flags=["--eval-only"]) == 0
    assert train_net("OUTPUT_DIR", str(out), flags=["--eval-only", "--resume"]) == 0  # the run's last checkpoint
    assert _unchanged(out, record)
    first, second = sorted(out.glob("eval_*"))
    for evaluation in (first, second):
        assert "copypaste: AP,AP50" in _log(evaluation)
        assert (evaluation / "inference" / "coco_instances_results.json").exists()
        assert f"WEIGHTS: {out / 'model_final.pth'}" in (evaluation / "config.yaml").read_text()
    assert _copypaste(_log(first)) == _copypaste(_log(second))


def _chattr(flag, *paths):
    if subprocess.run(["chattr", flag, *map(str, paths)], capture_output=True).returncode:
        pytest.skip("chattr +i (an entry no rename can move, also as root) is not available here")


@pytest.mark.parametrize("immutable,words", [
    ("inference", "inference cannot move (it is a folder that cannot be written"),
    ("metrics.json", "metrics.json cannot move (Operation not permitted); every file is where it was"),
])
def test_a_move_aside_that_cannot_finish_moves_nothing(datasets_root, tmp_path, capsys, immutable, words):
    """--overwrite moved what it could and stopped at an entry it could not move: the folder was split between
    previous_run_* and itself. A folder that cannot move is found before anything moves; a file the check cannot
    foresee (immutable) makes the move undo itself. Either way: one line naming it, the folder as it was."""
    out = tmp_path / "run"
    record = _finished_run(out)
    _chattr("+i", out / immutable)
    try:
        assert train_net("OUTPUT_DIR", str(out), flags=["--overwrite"]) == 1
    finally:
        _chattr("-i", out / immutable)
    err = capsys.readouterr().err
    assert f"train_net: error: cannot move the previous run in {out} aside: {out / immutable}" in err
    assert words in err and "Traceback" not in err
    assert _unchanged(out, record) and not list(out.glob("previous_run_*"))


KILL_WHILE_MOVING = """
import os, sys, time
from rgs_detectron.utils import previous_run

replace, moved = os.replace, []
def slow_replace(src, dst):  # the list of what to move (written atomically), then the files
    replace(src, dst)
    moved.append(dst)
    if len(moved) == 3:
        open(sys.argv[2], "w").close()
        time.sleep(600)
os.replace = slow_replace
previous_run.move_previous_run(sys.argv[1], ("*",), "test")
"""


@pytest.mark.slow
def test_a_move_aside_killed_half_way_is_finished_by_the_next_run(datasets_root, tmp_path, capsys):
    """SIGKILL after two of the previous run's files moved: the next run (--resume) finishes the move before it looks
    at the folder, so it starts over as after a whole move (it gave a self-contradictory refusal), and the previous
    run is whole in previous_run_*."""
    out = tmp_path / "run"
    record = _finished_run(out)
    moved_two = tmp_path / "moved_two"
    proc = subprocess.Popen([sys.executable, "-c", KILL_WHILE_MOVING, str(out), str(moved_two)], start_new_session=True)
    _kill_when(proc, moved_two.exists, "the move")
    (previous, ) = out.glob("previous_run_*")
    assert len(list(previous.iterdir())) == 3  # two files and the list of what to move: a split folder

    assert train_net("OUTPUT_DIR", str(out), flags=["--resume"]) == 0
    err = capsys.readouterr().err
    assert "killed while it moved the previous run aside; that move is now finished: the previous run's files are " \
        f"in {previous}" in err
    assert _unchanged(previous, record) and not (previous / ".moving").exists()
    assert "Starting training from iteration 0" in _log(out)
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 5  # the new run's, all 6 steps


@pytest.mark.slow
def test_the_digits_demo_names_a_log_only_when_there_is_one(builtin_digits_here, tmp_path, capsys):
    """A train_net refused before it starts writes no log.txt: digits_demo pointed at one that did not exist."""
    from rgs_detectron.cli import digits_demo

    assert digits_demo.main(["--device", "cpu", "--output", str(tmp_path / "o"), "SOLVER.MAX_ITER", "-5"]) == 1
    err = capsys.readouterr().err
    assert "digits_demo: error: training failed (exit status 2): train_net's message is above" in err
    assert "log.txt" not in err and not (tmp_path / "o" / "log.txt").exists()
