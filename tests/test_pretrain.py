"""Pretraining the classifier: each recipe family runs, DDP on 2 CPU processes agrees with one,
kill -9 and --resume finish the same run, and the whole chain (pretrain -> convert ->
fine-tune a detector with train_net -> evaluate) works on real data."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from rgs_detectron.cli import train_classifier as tool
from rgs_detectron.errors import InputError
from rgs_detectron.classification import datasets as pretrain_datasets
from rgs_detectron.classification.datasets import build_datasets

DIGITS = ["--dataset", "digits", "--depth", "26", "--width-mult", "0.25", "--recipe", "cifar", "--workers", "0",
          "--no-progress", "--device", "cpu"]


def env(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)


def history(folder):
    return json.loads((folder / "metrics.json").read_text())


def test_cifar_recipe_on_real_digits_learns(tmp_path):
    out = tmp_path / "run"
    assert tool.main([*DIGITS, "--variant", "b-RGS", "--epochs", "4", "--batch-size", "64", "--lr", "0.05",
                      "--output", str(out)]) == 0
    rows = history(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["val_top1"] > 60  # chance is 10%; measured 92.3
    # The CIFAR milestones 82 and 124 of 164 epochs, scaled to 4: x0.1 after epochs 2 and 3.
    assert [r["lr"] for r in rows] == pytest.approx([0.05, 0.05, 0.005, 0.0005])
    final = torch.load(out / "model_final.pth", weights_only=True)
    assert final["rgsnet_spec"]["variant"] == "b-RGS" and final["num_classes"] == 10
    assert "cifar recipe: 4 epochs, batch 64, lr 0.05" in final["description"]
    assert (out / "log.txt").exists() and any((out / "tensorboard").iterdir())


def test_imagenet_recipe_on_an_image_folder(tmp_path):
    root = tmp_path / "imagenet"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k, color in enumerate(((200, 30, 30), (30, 30, 200))):
            folder = root / split / f"n0000{k}"
            folder.mkdir(parents=True)
            for i in range(8 if split == "train" else 4):
                pixels = np.clip(rng.normal(color, 40, (48, 56, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    out = tmp_path / "run"
    assert tool.main(["--dataset", "imagenet", "--data-root", str(root), "--image-size", "32", "--recipe", "imagenet",
                      "--epochs", "2", "--batch-size", "8", "--variant", "Res-RGS", "--depth", "26", "--width-mult",
                      "0.25", "--workers", "0", "--no-progress", "--device", "cpu", "--output", str(out)]) == 0
    rows = history(out)
    assert len(rows) == 2 and rows[0]["lr"] == pytest.approx(0.1 * 8 / 256)  # the linear scaling rule
    assert torch.load(out / "model_final.pth", weights_only=True)["num_classes"] == 2


@pytest.mark.skipif(not os.path.isdir(pretrain_datasets.FASHION_MNIST_DEBIAN),
                    reason="Debian's dataset-fashion-mnist is not installed (tools/setup_env.sh installs it)")
def test_fashion_mnist_from_debians_package(tmp_path):
    out = tmp_path / "run"
    assert tool.main([*DIGITS[2:], "--dataset", "fashion_mnist", "--data-root", str(tmp_path / "data"),
                      "--epochs", "1", "--limit-train", "512", "--limit-val", "256", "--output", str(out)]) == 0
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    assert sorted(os.listdir(raw)) == sorted(pretrain_datasets.FASHION_MNIST_FILES)
    train, val, classes, size = build_datasets("fashion_mnist", str(tmp_path / "data"))
    assert (len(train), len(val), classes, size) == (60000, 10000, 10, 32)
    assert history(out)[0]["val_top1"] > 10


def test_bad_dataset_folders_are_explained(tmp_path, monkeypatch):
    (tmp_path / "in" / "train").mkdir(parents=True)
    with pytest.raises(InputError, match=r"train has no class folders.*val does not exist"):
        build_datasets("imagenet", str(tmp_path / "in"))
    monkeypatch.setattr(pretrain_datasets, "FASHION_MNIST_DEBIAN", str(tmp_path / "no-debian"))
    with pytest.raises(InputError, match="apt-get install dataset-fashion-mnist"):
        build_datasets("fashion_mnist", str(tmp_path / "fm"))
    raw = tmp_path / "fm" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in pretrain_datasets.FASHION_MNIST_FILES:
        (raw / name).write_bytes(b"\x00\x00\x08\x03 truncated")
    with pytest.raises(InputError, match="cannot read the fashion_mnist dataset"):
        build_datasets("fashion_mnist", str(tmp_path / "fm"))
    with pytest.raises(InputError, match="cannot read the cifar10 dataset.*--download fetches it"):
        build_datasets("cifar10", str(tmp_path / "nothing"))


def test_an_existing_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*DIGITS, "--variant", "original", "--epochs", "1", "--limit-train", "128", "--output", str(out)]
    assert tool.main(argv) == 0
    before = (out / "model_final.pth").read_bytes()
    assert tool.main(argv) == 2
    assert "pass --resume" in capsys.readouterr().err and (out / "model_final.pth").read_bytes() == before


def test_small_stem_checkpoints_are_refused_by_the_converter(tmp_path, capsys):
    from rgs_detectron.cli import convert

    out = tmp_path / "run"
    assert tool.main([*DIGITS, "--variant", "b-RGS", "--stem", "small", "--image-size", "16", "--epochs", "1",
                      "--limit-train", "128", "--output", str(out)]) == 0
    assert convert.main([str(out / "model_final.pth"), str(tmp_path / "d2.pth")]) == 1
    assert "small-image stem" in capsys.readouterr().err and not (tmp_path / "d2.pth").exists()


@pytest.mark.slow
def test_two_cpu_processes_agree_with_one(tmp_path):
    """torchrun with 2 gloo processes: same global batch, same recipe, accuracy within noise."""
    common = [*DIGITS, "--variant", "Res-RGS", "--epochs", "4", "--batch-size", "64", "--lr", "0.05"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert tool.main([*common, "--output", str(one)]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "rgs_detectron.cli.train_classifier", *common, "--output", str(two)]
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (two / "log.txt").read_text()
    assert "2 process(es) on cpu, 32 images each per step" in log
    a, b = history(one)[-1], history(two)[-1]
    assert a["val_top1"] > 80 and b["val_top1"] > 80, (a, b)
    assert abs(a["val_top1"] - b["val_top1"]) < 6, (a, b)  # 300 images: 6 points is ~2 standard errors


@pytest.mark.slow
def test_kill_9_then_resume_finishes_the_same_run(tmp_path):
    common = [*DIGITS, "--variant", "d-RGS", "--epochs", "5", "--batch-size", "64", "--lr", "0.05",
              "--limit-train", "768"]
    whole = tmp_path / "whole"
    assert tool.main([*common, "--output", str(whole)]) == 0
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "rgs_detectron.cli.train_classifier", *common, "--output", str(out)]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "metrics.json").exists() and len(history(out)) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "model_final.pth").exists()
    r = subprocess.run(cmd + ["--resume"], env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = history(out)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4, 5]
    # Each epoch is seeded from (seed, epoch): the resumed run is the uninterrupted one.
    assert [row["val_top1"] for row in rows] == [row["val_top1"] for row in history(whole)]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["Res-RGS", "original"])
def test_chain_pretrain_convert_finetune_evaluate(tmp_path, variant):
    """Real data end to end: a classifier pretrained on handwritten digits, converted with no
    options (the checkpoint records its architecture), fine-tunes the digits detector."""
    from rgs_detectron.data import generate_digits_dataset

    classifier = tmp_path / "classifier"
    assert tool.main([*DIGITS, "--variant", variant, "--epochs", "1", "--batch-size", "64", "--lr", "0.05",
                      "--output", str(classifier)]) == 0
    weights = tmp_path / "imagenet_weights.pth"
    r = subprocess.run([sys.executable, "tools/convert_rgsnet_to_d2.py", str(classifier / "model_final.pth"),
                        str(weights)], env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"VARIANT: {variant}" in r.stdout

    datasets = tmp_path / "datasets"
    generate_digits_dataset(datasets / "rgs_digits", num_train=16, num_val=6, image_size=64, min_scale=14, max_scale=28)
    out = tmp_path / "detector"
    cmd = [sys.executable, "tools/train_net.py", "--config-file", "configs/demo/digits_res_rgs.yaml",
           "MODEL.RGSNET.VARIANT", variant, "MODEL.WEIGHTS", str(weights), "MODEL.DEVICE", "cpu",
           "SOLVER.MAX_ITER", "6", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "2", "SOLVER.BASE_LR", "0.01",
           "TEST.EVAL_PERIOD", "0", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
           "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64", "DATALOADER.NUM_WORKERS", "0",
           "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "OUTPUT_DIR", str(out)]
    r = subprocess.run(cmd, env=env(DETECTRON2_DATASETS=str(datasets)), capture_output=True, text=True, timeout=600)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "Following weights matched with submodule backbone.bottom_up" in log  # the pretrained backbone loaded
    assert "copypaste: AP,AP50,AP75" in log and (out / "model_final.pth").exists()
    # The detector started from the pretrained stem (the first layer barely moves in 6 steps at lr 0.01).
    pretrained = torch.load(weights, weights_only=True)["model"]["stem.conv1.weight"]
    tuned = torch.load(out / "model_final.pth", weights_only=True)["model"]["backbone.bottom_up.stem.conv1.weight"]
    assert torch.nn.functional.cosine_similarity(pretrained.flatten(), tuned.flatten(), dim=0) > 0.99


def test_impossible_schedules_are_usage_errors(tmp_path, capsys):
    assert tool.main([*DIGITS, "--epochs", "0", "--output", str(tmp_path / "a")]) == 2
    assert "--epochs (0)" in capsys.readouterr().err
    assert tool.main([*DIGITS, "--limit-train", "10", "--batch-size", "64", "--output", str(tmp_path / "b")]) == 2
    assert "larger than the training set (10 images)" in capsys.readouterr().err


def test_a_warm_started_run_says_so_in_every_record(tmp_path):
    from rgs_detectron.classification import RGSNetClassifier
    from rgs_detectron.modeling import RGSNetSpec

    resnet = tmp_path / "resnet.pth"
    torch.save(RGSNetClassifier(RGSNetSpec.create("original", 26, 0.25), num_classes=1000).state_dict(), resnet)
    out = tmp_path / "run"
    assert tool.main([*DIGITS, "--variant", "b-RGS", "--epochs", "1", "--limit-train", "128",
                      "--warm-start", str(resnet), "--output", str(out)]) == 0
    label = "not the paper's protocol"
    assert label in history(out)[0]["warm_start"]
    assert label in torch.load(out / "model_final.pth", weights_only=True)["warm_start"]
    assert "WARM START" in (out / "log.txt").read_text()
