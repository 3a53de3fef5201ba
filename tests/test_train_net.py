"""tools/train_net.py end to end on tiny built-in data: COCO and VOC formats, 2-process
launch on the CPU, --eval-only, and resuming after SIGKILL."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from rgs_detectron.data import generate_digits_dataset

TINY = [
    "SOLVER.MAX_ITER", "6", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "(100,)",
    "SOLVER.BASE_LR", "0.01", "TEST.EVAL_PERIOD", "0", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
    "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64", "DATALOADER.NUM_WORKERS", "0",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",  # an untrained model must still predict something
]
NUM_VAL = 6


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    generate_digits_dataset(root / "rgs_digits", num_train=16, num_val=NUM_VAL, image_size=64, min_scale=14, max_scale=28)
    return str(root)


def _env(datasets_root):
    return dict(os.environ, DETECTRON2_DATASETS=datasets_root, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def train_net(datasets_root, *opts, flags=(), config="configs/demo/digits_res_rgs.yaml", check=True, timeout=600):
    cmd = [sys.executable, "tools/train_net.py", "--config-file", config, *flags, *opts]
    r = subprocess.run(cmd, env=_env(datasets_root), capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r


def _copypaste(text):
    """The AP row Detectron2 prints after evaluation (last one in the log)."""
    rows = re.findall(r"copypaste: ([-\d.,nan]+)\n", text)
    return rows[-1]


@pytest.mark.slow
def test_train_and_evaluate_coco_format(datasets_root, tmp_path):
    out = tmp_path / "coco"
    r = train_net(datasets_root, *TINY, "OUTPUT_DIR", str(out), "TEST.COCO_EVAL_ENGINE", "pycocotools")
    log = r.stdout + r.stderr
    assert "Evaluation results for bbox" in log and "copypaste: AP,AP50,AP75,APs,APm,APl" in log
    for name in ("model_final.pth", "metrics.json", "last_checkpoint", "inference/coco_instances_results.json"):
        assert (out / name).exists(), name
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())
    rows = [json.loads(line) for line in open(out / "metrics.json")]
    assert rows[-1]["iteration"] == 6 and "bbox/AP" in rows[-1]  # eval after the last step

    # --eval-only on the saved checkpoint gives the same numbers.
    again = train_net(datasets_root, *TINY, "MODEL.WEIGHTS", str(out / "model_final.pth"),
                      "OUTPUT_DIR", str(tmp_path / "eval"), "TEST.COCO_EVAL_ENGINE", "pycocotools", flags=["--eval-only"])
    assert _copypaste(again.stdout + again.stderr) == _copypaste(log)


@pytest.mark.slow
def test_train_and_evaluate_voc_format(datasets_root, tmp_path):
    out = tmp_path / "voc"
    r = train_net(datasets_root, *TINY, "OUTPUT_DIR", str(out), config="configs/demo/digits_res_rgs_voc.yaml")
    log = r.stdout + r.stderr
    assert "Evaluating rgs_digits_voc_val using 2007 metric" in log
    assert re.search(r"copypaste: AP,AP50,AP75", log)
    assert (out / "model_final.pth").exists()


@pytest.mark.slow
def test_two_process_launch_on_cpu_gathers_both_ranks(datasets_root, tmp_path):
    out = tmp_path / "ddp"
    r = train_net(datasets_root, *TINY, "OUTPUT_DIR", str(out), "TEST.COCO_EVAL_ENGINE", "pycocotools",
                  flags=["--num-gpus", "2", "--dist-url", "auto"])
    log = r.stdout + r.stderr
    assert "Evaluation results for bbox" in log
    assert "world size: 2" in log.lower() or "Rank of current process: 1" in log
    preds = torch.load(out / "inference" / "instances_predictions.pth", weights_only=False)
    assert sorted(p["image_id"] for p in preds) == list(range(17, 17 + NUM_VAL))  # every val image, from both ranks


@pytest.mark.slow
def test_sigkill_then_resume_continues_from_last_complete_checkpoint(datasets_root, tmp_path):
    out = tmp_path / "kill"
    opts = [*TINY, "SOLVER.MAX_ITER", "40", "SOLVER.CHECKPOINT_PERIOD", "4", "OUTPUT_DIR", str(out)]
    cmd = [sys.executable, "tools/train_net.py", "--config-file", "configs/demo/digits_res_rgs.yaml", *opts]
    proc = subprocess.Popen(cmd, env=_env(datasets_root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    tag = out / "last_checkpoint"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if tag.exists() and tag.read_text().strip() >= "model_0000011.pth":
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    last = tag.read_text().strip()
    last_iter = int(last[len("model_"):-len(".pth")])
    assert torch.load(out / last, weights_only=True)["iteration"] == last_iter

    r = train_net(datasets_root, *opts, flags=["--resume"])
    log = r.stdout + r.stderr
    assert f"Starting training from iteration {last_iter + 1}" in log
    assert (out / "model_final.pth").exists()
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 39


def test_missing_dataset_fails_before_training(tmp_path):
    r = train_net(str(tmp_path), *TINY, "OUTPUT_DIR", str(tmp_path / "o"), check=False, timeout=120)
    assert r.returncode != 0
    assert "rgs_digits_train" in r.stderr and "tools/make_digits_dataset.py" in r.stderr


def test_missing_weights_fail_before_training(tmp_path, datasets_root):
    r = train_net(datasets_root, *TINY, "MODEL.WEIGHTS", str(tmp_path / "imagenet.pth"), check=False, timeout=120)
    assert r.returncode != 0 and "tools/convert_rgsnet_to_d2.py" in r.stderr and "imagenet.pth" in r.stderr
