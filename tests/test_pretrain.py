"""Pretraining the classifier: each recipe family runs, DDP on 2 CPU processes agrees with one,
kill -9 and --resume finish the same run, a run is replaced or resumed only as asked and
records only what happened, bad input is one line naming the file or option, and the whole
chain (pretrain -> convert -> fine-tune a detector with train_net -> evaluate) works on real data."""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.utils.logger import setup_logger

from rgs_detectron.classification import datasets as pretrain_datasets
from rgs_detectron.classification.datasets import DATASETS, build_datasets
from rgs_detectron.cli import train_classifier as tool
from rgs_detectron.errors import InputError

from common import tool_module

DIGITS = [
    "--dataset", "digits", "--depth", "26", "--width-mult", "0.25", "--recipe", "cifar", "--workers", "0",
    "--no-progress", "--device", "cpu"
]
# The run that learns (shared, see digits_run) and a run that only has to exist (files, messages).
LEARN = [*DIGITS, "--variant", "Res-RGS", "--image-size", "16", "--epochs", "4", "--batch-size", "64", "--lr", "0.05"]
TINY = [*DIGITS, "--image-size", "16", "--batch-size", "32", "--limit-train", "64", "--limit-val", "32"]
ROOT = Path(__file__).resolve().parents[1]


def env(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)


def history(folder):
    return json.loads((folder / "metrics.json").read_text())


def usage_error(argv, capsys):
    """argparse's message for a command line it refuses (exit status 2)."""
    with pytest.raises(SystemExit) as exit_:
        tool.main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


@pytest.fixture(scope="module", autouse=True)
def console_log():
    """train_classifier's console handler is made once per process (Detectron2's cached setup_logger) on
    the stdout of that moment: let it be pytest's, not one test's capsys, closed after that test."""
    setup_logger(name="rgs_detectron", abbrev_name="rgs")


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """Res-RGS-26 0.25x on the real handwritten digits at 16x16, the CIFAR recipe shortened to 4 epochs,
    one process: the run the learning, DDP, kill-and-resume and chain tests compare with or start from."""
    out = tmp_path_factory.mktemp("digits") / "run"
    assert tool.main([*LEARN, "--output", str(out)]) == 0
    return out


def test_cifar_recipe_on_real_digits_learns(digits_run):
    rows = history(digits_run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["val_top1"] > 60  # chance is 10%; measured 86.3
    # The CIFAR milestones 82 and 124 of 164 epochs, scaled to 4: x0.1 after epochs 2 and 3.
    assert [r["lr"] for r in rows] == pytest.approx([0.05, 0.05, 0.005, 0.0005])
    final = torch.load(digits_run / "model_final.pth", weights_only=True)
    assert final["rgsnet_spec"]["variant"] == "Res-RGS" and final["num_classes"] == 10
    assert "cifar recipe: 4 epochs, batch 64, lr 0.05" in final["description"]
    assert final["settings"]["--epochs"] == 4 and final["settings"]["--lr"] == 0.05
    assert (digits_run / "log.txt").exists() and any((digits_run / "tensorboard").iterdir())


def _image_folder(root, size=(48, 56)):
    """Two colour classes in ImageFolder layout: 8 training and 4 evaluation images each."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for k, color in enumerate(((200, 30, 30), (30, 30, 200))):
            folder = root / split / f"n0000{k}"
            folder.mkdir(parents=True)
            for i in range(8 if split == "train" else 4):
                pixels = np.clip(rng.normal(color, 40, (*size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    return root


IMAGENET = [
    "--dataset", "imagenet", "--image-size", "32", "--recipe", "imagenet", "--epochs", "2", "--batch-size", "8",
    "--variant", "Res-RGS", "--depth", "26", "--width-mult", "0.25", "--no-progress", "--device", "cpu"
]


def test_imagenet_recipe_on_an_image_folder(tmp_path):
    root = _image_folder(tmp_path / "imagenet")
    out = tmp_path / "run"
    assert tool.main([*IMAGENET, "--data-root", str(root), "--workers", "0", "--output", str(out)]) == 0
    rows = history(out)
    assert len(rows) == 2 and rows[0]["lr"] == pytest.approx(0.1 * 8 / 256)  # the linear scaling rule
    assert torch.load(out / "model_final.pth", weights_only=True)["num_classes"] == 2


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_corrupt_image_is_named_also_from_a_worker_process(tmp_path, capsys, workers):
    root = _image_folder(tmp_path / "imagenet", size=(8, 8))
    bad = root / "train" / "n00001" / "3.jpg"
    bad.write_bytes(bad.read_bytes()[:100])
    assert tool.main([*IMAGENET, "--data-root", str(root), "--workers", workers, "--output", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert f"train_classifier: error: cannot read image {bad}" in err and "replace or remove the file" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not multiprocessing.active_children()  # the workers stopped with it (they lingered, then took 10 s)


@pytest.mark.skipif(not os.path.isdir(pretrain_datasets.FASHION_MNIST_DEBIAN),
                    reason="Debian's dataset-fashion-mnist is not installed (tools/setup_env.sh installs it)")
def test_fashion_mnist_from_debians_package(tmp_path):
    out = tmp_path / "run"
    assert tool.main([
        *DIGITS[2:], "--dataset", "fashion_mnist", "--data-root",
        str(tmp_path / "data"), "--epochs", "1", "--limit-train", "512", "--limit-val", "256", "--output",
        str(out)
    ]) == 0
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
        (raw / name).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x10" + bytes(16))  # whole: 16 bytes, as its header says
    header = b"\x00\x00\x08\x03" + b"".join(n.to_bytes(4, "big") for n in (60000, 28, 28))
    (raw / "train-images-idx3-ubyte").write_bytes(header + b"truncated")
    # The file is named, and deleting it helps (torchvision never fetches a file that exists).
    with pytest.raises(InputError, match=r"train-images-idx3-ubyte is truncated .*header says 47040016\): delete it"):
        build_datasets("fashion_mnist", str(tmp_path / "fm"), download=True)
    (raw / "train-images-idx3-ubyte").write_bytes(header[:10])  # cut inside its header: numpy's ValueError before
    with pytest.raises(InputError, match=r"train-images-idx3-ubyte is truncated or not a Fashion-MNIST file \(10 b"):
        build_datasets("fashion_mnist", str(tmp_path / "fm"), download=True)
    with pytest.raises(InputError, match="cannot read the cifar10 dataset.*--download fetches it"):
        build_datasets("cifar10", str(tmp_path / "nothing"))


def test_every_registered_dataset_is_offered_and_documented():
    names = [name for name, _ in DATASETS]
    assert names == ["imagenet", "cifar10", "cifar100", "fashion_mnist", "digits"]
    dataset_option = next(a for a in tool.get_parser()._actions if a.dest == "dataset")
    assert list(dataset_option.choices) == names
    docs = (ROOT / "docs" / "PRETRAINING.md").read_text()
    assert all(f"`{name}`" in docs for name in names)


def test_a_run_or_a_finished_model_is_replaced_only_when_asked(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*TINY, "--epochs", "1", "--output", str(out)]
    assert tool.main(argv) == 0
    before = (out / "model_final.pth").read_bytes()
    assert tool.main(argv) == 2
    assert "pass --resume to continue it, --overwrite to start a new run there" in capsys.readouterr().err
    # A finished model whose last.pth is gone is kept as well (it was silently replaced).
    (out / "last.pth").unlink()
    assert tool.main(argv) == 2 and "--overwrite to start a new run there" in capsys.readouterr().err
    assert tool.main([*argv, "--resume"]) == 2 and "no last.pth to resume from" in capsys.readouterr().err
    assert (out / "model_final.pth").read_bytes() == before and not (out / "last.pth").exists()
    assert tool.main([*argv, "--overwrite"]) == 0 and (out / "last.pth").exists()
    (previous, ) = out.glob("previous_run_*")  # the old run, moved aside whole: never deleted
    assert (previous / "model_final.pth").read_bytes() == before and (previous / "metrics.json").exists()
    assert len(list((out / "tensorboard").iterdir())) == 1  # the old run's events went with it
    assert "not allowed with argument --resume" in usage_error([*argv, "--resume", "--overwrite"], capsys)


@pytest.mark.slow
def test_overwrite_killed_in_its_first_epoch_loses_no_finished_model(tmp_path):
    """--overwrite deleted the finished model before the new run had produced anything: a kill in epoch 1 left
    nothing. The previous run is moved aside first, whole (as train_net --overwrite does)."""
    out = tmp_path / "run"
    assert tool.main([*TINY, "--epochs", "1", "--output", str(out)]) == 0
    before = {name: (out / name).read_bytes() for name in ("model_final.pth", "last.pth", "metrics.json", "log.txt")}
    cmd = [
        sys.executable, "-m", "rgs_detectron.cli.train_classifier", *TINY, "--epochs", "50", "--overwrite", "--output",
        str(out)
    ]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        log = out / "log.txt"
        text = log.read_text() if log.exists() else ""
        if "evaluation images" in text and "epoch 1/1:" not in text:
            break  # the new run's log (opened after the move aside) says its first epoch has begun
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "model_final.pth").exists()
    (previous, ) = out.glob("previous_run_*")
    assert {name: (previous / name).read_bytes() for name in before} == before


def test_resume_refuses_options_that_differ_from_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [*TINY, "--epochs", "2", "--output", str(out)]
    assert tool.main(argv) == 0
    files = {name: (out / name).read_bytes() for name in ("last.pth", "model_final.pth", "metrics.json")}
    # Resuming the finished run does nothing, and says so.
    assert tool.main([*argv, "--resume"]) == 0
    assert "model_final.pth is this run, finished: nothing to do" in (out / "log.txt").read_text()
    for changed, named in ((["--epochs", "1"], ["--epochs 1 (the run: 2)"]),
                           (["--lr", "0.5", "--seed", "3"], ["--lr 0.5 (the run: 0.025)", "--seed 3 (the run: 0)"]),
                           (["--limit-train", "33"], ["--limit-train (training images) 33 (the run: 64)"
                                                      ]), (["--variant",
                                                            "b-RGS"], ["variant b-RGS (the run: Res-RGS)"])):
        assert tool.main([*argv, *changed, "--resume"]) == 2, changed
        err = capsys.readouterr().err
        assert all(n in err for n in named) and "Resume with the run's options, pass --overwrite" in err, err
    assert files == {name: (out / name).read_bytes() for name in files}  # nothing recorded that did not happen
    # A last.pth from before settings were recorded is compared by its description.
    older = torch.load(out / "last.pth", weights_only=True)
    del older["settings"]
    torch.save(older, out / "last.pth")
    assert tool.main([*argv, "--epochs", "1", "--resume"]) == 2
    assert "this command trains 'digits at 16x16 (64 train / 32 eval images), cifar recipe: 1 epochs" in \
        capsys.readouterr().err
    assert tool.main([*argv, "--resume"]) == 0
    # A damaged last.pth is named, with the fix, in one line.
    for damaged in (files["last.pth"][:len(files["last.pth"]) // 2], b""):
        (out / "last.pth").write_bytes(damaged)
        assert tool.main([*argv, "--resume"]) == 1
        err = capsys.readouterr().err
        assert f"{out / 'last.pth'}" in err and "pass --overwrite to train again" in err
        assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("option, value", [("--lr", "0"), ("--lr", "-0.1"), ("--limit-train", "-100"),
                                           ("--limit-val", "0"), ("--image-size", "0"), ("--workers", "-1"),
                                           ("--epochs", "0"), ("--batch-size", "0"), ("--depth", "-50")])
def test_impossible_values_are_usage_errors(tmp_path, capsys, option, value):
    err = usage_error([*TINY, option, value, "--output", str(tmp_path / "a")], capsys)
    assert f"train_classifier: error: argument {option}: {value} is invalid: give" in err
    assert not (tmp_path / "a").exists()


def test_a_training_set_smaller_than_a_batch_is_a_usage_error(tmp_path, capsys):
    assert tool.main([*DIGITS, "--limit-train", "10", "--batch-size", "64", "--output", str(tmp_path / "b")]) == 2
    assert "larger than the training set (10 images)" in capsys.readouterr().err


def test_a_full_disk_is_one_line_naming_the_place_and_nothing_is_half_written(tmp_path, capsys, monkeypatch):
    # Written to a full device (/dev/full fails every write with ENOSPC): the first log line.
    out = tmp_path / "full"
    out.mkdir()
    (out / "log.txt").symlink_to("/dev/full")
    assert tool.main([*TINY, "--epochs", "1", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out / 'log.txt'}: [Errno 28] No space left on device" in err
    assert err.count("No space left") == 1 and "Logging error" not in err  # not a traceback per line
    assert sorted(os.listdir(out)) == [".rgs_detectron.lock", "log.txt"]
    # Too little room for the checkpoints: refused before the first write.
    monkeypatch.setattr("shutil.disk_usage", lambda path: SimpleNamespace(free=1 << 20))
    out = tmp_path / "small"
    assert tool.main([*TINY, "--epochs", "1", "--output", str(out)]) == 1
    assert f"{str(out)!r} has 1 MiB free and this run needs about" in capsys.readouterr().err
    assert os.listdir(out) == []


def test_small_stem_checkpoints_are_refused_by_the_converter(tmp_path, capsys):
    from rgs_detectron.cli import convert

    out = tmp_path / "run"
    assert tool.main([*TINY, "--variant", "b-RGS", "--stem", "small", "--epochs", "1", "--output", str(out)]) == 0
    assert convert.main([str(out / "model_final.pth"), str(tmp_path / "d2.pth")]) == 1
    assert "small-image stem" in capsys.readouterr().err and not (tmp_path / "d2.pth").exists()


@pytest.mark.slow
@pytest.mark.serial
def test_two_cpu_processes_agree_with_one(digits_run, tmp_path):
    """torchrun with 2 gloo processes: same global batch, same recipe, accuracy within noise. On a free port, so
    that another run of the suite on this machine is no obstacle (not --standalone: torch 2.3's torchrun crashes
    in its rendezvous with it)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    two = tmp_path / "two"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--master_port",
        str(port), "--nproc_per_node", "2", "-m", "rgs_detectron.cli.train_classifier", *LEARN, "--output",
        str(two)
    ]
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (two / "log.txt").read_text()
    assert "2 process(es) on cpu, 32 images each per step" in log
    a, b = history(digits_run)[-1], history(two)[-1]
    assert a["val_top1"] > 80 and b["val_top1"] > 80, (a, b)  # measured 86.3 and 86.0
    assert abs(a["val_top1"] - b["val_top1"]) < 6, (a, b)  # 300 images: 6 points is ~2 standard errors


@pytest.mark.slow
def test_kill_9_then_resume_finishes_the_same_run(digits_run, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "rgs_detectron.cli.train_classifier", *LEARN, "--output", str(out)]
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
    # What a kill during a save leaves (the killed writer's pid in its name), and a live writer's file.
    dead = out / f".last.pth.{proc.pid}.0123abcd.tmp"
    live = out / f".notes.txt.{os.getpid()}.0123abcd.tmp"
    dead.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    assert tool.main([*LEARN, "--output", str(out), "--resume"]) == 0  # in this process: only the kill needs another
    rows = history(out)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    # Each epoch is seeded from (seed, epoch): the resumed run is the uninterrupted one.
    assert [row["val_top1"] for row in rows] == [row["val_top1"] for row in history(digits_run)]
    assert not dead.exists() and live.exists()
    assert f"Removed temporary files of a killed run: {dead.name}" in (out / "log.txt").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["Res-RGS", "original"])
def test_chain_pretrain_convert_finetune_evaluate(tmp_path, tmp_path_factory, capsys, variant, request):
    """Real data end to end: a classifier pretrained on handwritten digits, converted with no
    options (the checkpoint records its architecture), fine-tunes the digits detector."""
    from rgs_detectron.cli import convert, train_net
    from rgs_detectron.data.builtin import register_digits
    from rgs_detectron.data.digits import generate_digits_dataset

    if variant == "Res-RGS":
        classifier = request.getfixturevalue("digits_run")
    else:
        classifier = tmp_path / "classifier"
        assert tool.main([
            *DIGITS, "--variant", variant, "--epochs", "1", "--batch-size", "64", "--lr", "0.05", "--limit-train",
            "256", "--output",
            str(classifier)
        ]) == 0
    weights = tmp_path / "imagenet_weights.pth"
    capsys.readouterr()
    assert convert.main([str(classifier / "model_final.pth"), str(weights)]) == 0
    assert f"VARIANT: {variant}" in capsys.readouterr().out

    datasets = tmp_path_factory.getbasetemp() / "chain_datasets"
    generate_digits_dataset(datasets / "rgs_digits", num_train=16, num_val=6, image_size=64, min_scale=14, max_scale=28)
    register_digits(str(datasets), prefix="rgs_digits_chain")
    out = tmp_path / "detector"
    assert train_net.main([
        "--config-file",
        str(ROOT / "configs/demo/digits_res_rgs.yaml"), "MODEL.RGSNET.VARIANT", variant, "MODEL.WEIGHTS",
        str(weights), "MODEL.DEVICE", "cpu", "DATASETS.TRAIN", "('rgs_digits_chain_train',)", "DATASETS.TEST",
        "('rgs_digits_chain_val',)", "SOLVER.MAX_ITER", "6", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "2",
        "SOLVER.BASE_LR", "0.01", "TEST.EVAL_PERIOD", "0", "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN",
        "64", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64", "DATALOADER.NUM_WORKERS", "0",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "OUTPUT_DIR",
        str(out)
    ]) == 0
    log = (out / "log.txt").read_text()
    assert "Following weights matched with submodule backbone.bottom_up" in log  # the pretrained backbone loaded
    assert "copypaste: AP,AP50,AP75" in log and (out / "model_final.pth").exists()
    # The detector started from the pretrained stem (the first layer barely moves in 6 steps at lr 0.01).
    pretrained = torch.load(weights, weights_only=True)["model"]["stem.conv1.weight"]
    tuned = torch.load(out / "model_final.pth", weights_only=True)["model"]["backbone.bottom_up.stem.conv1.weight"]
    assert torch.nn.functional.cosine_similarity(pretrained.flatten(), tuned.flatten(), dim=0) > 0.99


def test_a_warm_started_run_says_so_in_every_record(tmp_path):
    from rgs_detectron.classification import RGSNetClassifier
    from rgs_detectron.modeling import RGSNetSpec

    resnet = tmp_path / "resnet.pth"
    torch.save(RGSNetClassifier(RGSNetSpec.create("original", 26, 0.25), num_classes=1000).state_dict(), resnet)
    out = tmp_path / "run"
    assert tool.main([*TINY, "--variant", "b-RGS", "--epochs", "1", "--warm-start",
                      str(resnet), "--output",
                      str(out)]) == 0
    label = "not the paper's protocol"
    assert label in history(out)[0]["warm_start"]
    assert label in torch.load(out / "model_final.pth", weights_only=True)["warm_start"]
    assert "WARM START" in (out / "log.txt").read_text()


def test_a_resume_does_not_read_the_warm_start_again(tmp_path, monkeypatch):
    """The warm start is read only by a fresh run: a run interrupted after its first epoch resumes with the
    warm-start file gone (moved, or an emptied torchvision cache) and ends as the uninterrupted run."""
    from rgs_detectron.classification import RGSNetClassifier, pretrain
    from rgs_detectron.modeling import RGSNetSpec

    resnet = tmp_path / "resnet.pth"
    torch.save(RGSNetClassifier(RGSNetSpec.create("original", 26, 0.25), num_classes=10).state_dict(), resnet)
    argv = [*TINY, "--variant", "b-RGS", "--epochs", "2", "--warm-start", str(resnet), "--resume", "--output"]
    assert tool.main([*argv, str(tmp_path / "whole")]) == 0
    train_epoch = pretrain._Run._train_epoch

    def stop_in_epoch_2(run, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return train_epoch(run, epoch)

    monkeypatch.setattr(pretrain._Run, "_train_epoch", stop_in_epoch_2)
    out = tmp_path / "interrupted"
    assert tool.main([*argv, str(out)]) == 130  # interrupted, as by ctrl-C
    monkeypatch.undo()
    resnet.rename(tmp_path / "moved.pth")
    assert tool.main([*argv, str(out)]) == 0
    assert (out / "log.txt").read_text().count("WARM START") == 1
    whole, resumed = (torch.load(d / "model_final.pth", weights_only=True) for d in (tmp_path / "whole", out))
    assert all(torch.equal(whole["state_dict"][k], v) for k, v in resumed["state_dict"].items())


def test_study_summary_names_files_it_cannot_read_and_goes_on(tmp_path, capsys):
    study = tool_module("pretrain_study")
    run = tmp_path / "classification" / "original_seed0"
    run.mkdir(parents=True)
    (run / "model_final.pth").write_bytes(b"not a checkpoint")
    (run / "metrics.json").write_text("[]")
    detection = tmp_path / "detection" / "original_seed0" / "scratch"
    detection.mkdir(parents=True)
    (detection / "model_final.pth").write_bytes(b"")
    (detection / "metrics.json").write_text("{not json\n")
    assert study.main([
        "--output",
        str(tmp_path), "--summary-only", "--variants", "original", "b-RGS", "--det-variants", "original", "--seeds",
        "0", "--starts", "scratch"
    ]) == 0
    out = capsys.readouterr().out
    assert f"cannot read {run / 'model_final.pth'}" in out and f"cannot read {detection / 'metrics.json'}" in out
    assert "Traceback" not in out and "PARTIAL" in (tmp_path / "summary.md").read_text()


def _globals_in(path):
    """Every global a torch.save archive's pickle asks for, read without unpickling it."""
    import pickletools
    import zipfile

    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.add(".".join(strings[-2:]))
        elif isinstance(arg, str):
            strings.append(arg)
    return found


def test_last_pth_holds_only_what_the_oldest_supported_torch_reads(tmp_path):
    """torch 2.3's weights-only loader builds torch's own types and OrderedDict, nothing else (not the
    collections.Counter of MultiStepLR's state); the matrix resumes a run on that torch for real."""
    out = tmp_path / "run"
    argv = [*TINY, "--epochs", "2", "--output", str(out)]
    assert tool.main(argv) == 0
    foreign = {g for g in _globals_in(out / "last.pth") if not g.startswith("torch.")} - {"collections.OrderedDict"}
    assert not foreign
    before = history(out)
    (out / "model_final.pth").unlink()
    state = torch.load(out / "last.pth", weights_only=True)
    state["epoch"], state["history"] = 0, state["history"][:1]
    torch.save(state, out / "last.pth")
    assert tool.main([*argv, "--resume"]) == 0  # the milestones, a dict on disk, act again after the resume
    assert [h["lr"] for h in history(out)] == [h["lr"] for h in before]


def test_a_run_this_torch_cannot_read_is_never_advised_overwrite(tmp_path, capsys, monkeypatch):
    """The run's own intact last.pth, refused by this torch's weights-only loader (as torch 2.3 refuses the
    Counter older runs saved; here a Fraction stands in, as if a newer torch allowed it): --overwrite would
    throw the run away, so the message says which torch reads it instead."""
    import fractions

    from rgs_detectron.utils import torch_files

    out = tmp_path / "run"
    argv = [*TINY, "--epochs", "2", "--output", str(out)]
    assert tool.main(argv) == 0
    state = torch.load(out / "last.pth", weights_only=True)
    state["scheduler"]["milestones"] = fractions.Fraction(1, 3)
    torch.save(state, out / "last.pth")
    monkeypatch.setitem(torch_files._ALLOWED_FROM, "fractions.Fraction", "99.0")
    assert tool.main([*argv, "--resume"]) == 1
    err = capsys.readouterr().err
    assert f"{out / 'last.pth'}" in err and "refuses fractions.Fraction" in err and "torch >= 99.0 reads it" in err
    assert "--overwrite" not in err and "corrupt" not in err and len(err.strip().splitlines()) == 1, err
