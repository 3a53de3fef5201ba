"""The demo tool on a folder of generated images: bad inputs skipped and reported, nothing of
the user's overwritten, strict weights, bounded drawing; and the digits demo's pictures."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import MetadataCatalog

from rgs_detectron.cli import demo as demo_tool
from rgs_detectron.cli.demo import collect_inputs

from common import save_random_detector

DATASET = "rgs_test_demo_names"
CLASS_NAMES = ["cat", "dog", "bird"]
SMALL_TEST = [
    "MODEL.ROI_HEADS.NUM_CLASSES", 3, "DATASETS.TEST", (DATASET, ), "INPUT.MIN_SIZE_TEST", 128, "INPUT.MAX_SIZE_TEST",
    192
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """(config file, weights file) of a random-weight tiny detector."""
    MetadataCatalog.get(DATASET).thing_classes = CLASS_NAMES
    config, weights, _ = save_random_detector(tmp_path_factory.mktemp("tiny_model"), "Res-RGS", "FPN", *SMALL_TEST)
    return config, weights


@pytest.fixture
def images(tmp_path):
    """A folder with three decodable images (two formats, three sizes) and a corrupt one."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.png": (96, 128), "b.jpg": (150, 110), "c.png": (64, 64)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
    (folder / "corrupt.png").write_bytes(b"\x89PNG garbage, not an image" + bytes(range(200)))
    (folder / "notes.txt").write_text("not an image; folders list only image files")
    return folder


def run_demo(tiny_model, *args):
    config, weights = tiny_model
    return demo_tool.main(
        ["--config-file", config, "--weights", weights, "--device", "cpu", "--no-progress", *map(str, args)])


def test_demo_folder_with_corrupt_and_missing_inputs(tiny_model, images, tmp_path, capsys):
    out = tmp_path / "out"
    missing = str(tmp_path / "does_not_exist.jpg")
    rc = run_demo(tiny_model, "--input", images, missing, images / "*.jpg", tmp_path / "*.none", "--output", out,
                  "--confidence-threshold", "0.05")
    assert rc == 0
    captured = capsys.readouterr()
    assert "Processed 3 image(s)" in captured.out and "skipped 3" in captured.out
    assert "corrupt.png" in captured.err and "does_not_exist.jpg" in captured.err

    # One drawing per processed image, at the image's own size.
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png", "c.png"]
    with Image.open(out / "b.png") as drawn:
        assert drawn.size == (110, 150)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    processed = {r["image_id"]: r for r in summary["processed"]}
    assert set(processed) == {"a", "b", "c"}  # every processed image has a record
    assert processed["b"]["height"] == 150 and processed["b"]["width"] == 110
    skipped = {os.path.basename(s["input"]): s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"corrupt.png", "does_not_exist.jpg", "*.none"}
    assert "cannot read image" in skipped["corrupt.png"]
    assert summary["categories"] == [{"id": i, "name": n} for i, n in enumerate(CLASS_NAMES)]

    detections = json.loads((out / "detections.json").read_text())
    assert len(detections) == sum(r["num_detections"] for r in processed.values())
    assert len(detections) > 0, "a 0.05 threshold on a random 3-class model keeps detections"
    for d in detections:
        assert set(d) == {"image_id", "category_id", "bbox", "score"}
        assert d["image_id"] in processed and d["category_id"] in (0, 1, 2) and d["score"] >= 0.05
        x, y, w, h = d["bbox"]
        size = processed[d["image_id"]]
        assert w >= 0 and h >= 0 and x + w <= size["width"] + 1e-3 and y + h <= size["height"] + 1e-3


def test_demo_nothing_processed_fails(tiny_model, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    out = tmp_path / "out"
    assert run_demo(tiny_model, "--input", bad, tmp_path / "missing.png", "--output", out) == 1
    assert "Processed 0 image(s)" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == [] and len(summary["skipped"]) == 2
    assert json.loads((out / "detections.json").read_text()) == []


def test_demo_never_writes_over_its_inputs(tiny_model, images, capsys):
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    assert run_demo(tiny_model, "--input", images, "--output", images) == 2
    assert "would overwrite the input image" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before


def test_an_image_the_model_cannot_take_is_skipped_and_the_rest_reported(tiny_model, images, tmp_path, capsys):
    Image.fromarray(np.zeros((3, 5000, 3), dtype=np.uint8)).save(images / "sliver.png")
    out = tmp_path / "out"
    assert run_demo(tiny_model, "--input", images, "--output", out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {r["image_id"] for r in summary["processed"]} == {"a", "b", "c"}
    assert "sliver.png" in {os.path.basename(s["input"]) for s in summary["skipped"]}
    assert summary["complete"] is True


def test_huge_image_is_drawn_at_a_bounded_size(tiny_model, tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    Image.new("RGB", (8000, 6000), (40, 80, 120)).save(folder / "huge.png")
    out = tmp_path / "out"
    assert run_demo(tiny_model, "--input", folder, "--output", out, "--confidence-threshold", "0.0") == 0
    with Image.open(out / "huge.png") as drawn:
        assert max(drawn.size) == 1600 and drawn.size == (1600, 1200)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"][0]["width"] == 8000  # detections stay in the image's own pixels


def test_a_240_byte_input_name_is_processed(tiny_model, tmp_path):
    """The drawing's name is the input's: its atomic-write temporary name once passed the 255-byte limit."""
    folder = tmp_path / "long"
    folder.mkdir()
    name = "n" * 236 + ".png"
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(folder / name)
    out = tmp_path / "out"
    assert run_demo(tiny_model, "--input", folder, "--output", out) == 0
    assert sorted(os.listdir(out)) == sorted([name, "detections.json", "summary.json"])


def test_weights_of_another_variant_are_refused(tiny_model, images, tmp_path, capsys):
    config, _ = tiny_model
    _, other, _ = save_random_detector(tmp_path, "original", "FPN", *SMALL_TEST)
    rc = demo_tool.main([
        "--config-file", config, "--weights", other, "--input",
        str(images), "--output",
        str(tmp_path / "out"), "--device", "cpu"
    ])
    assert rc == 1
    err = capsys.readouterr().err
    message = err[err.index("demo: error:"):]  # one message, no traceback, after the log lines
    assert "made for original-26, the model's backbone.bottom_up is Res-RGS-26" in message
    assert "Traceback" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,status,words", [
    (["--weights", "nope.pth"], 1, "does not exist"),
    (["--confidence-threshold", "1.5"], 2, "outside [0, 1]"),
    (["--confidence-threshold", "-0.1"], 2, "outside [0, 1]"),
])
def test_bad_command_lines(tiny_model, images, tmp_path, capsys, args, status, words):
    config, weights = tiny_model
    argv = [
        "--config-file", config, "--weights", weights, "--input",
        str(images), "--output",
        str(tmp_path / "o"), "--device", "cpu", *args
    ]
    if status == 2:
        with pytest.raises(SystemExit) as e:  # argparse's own usage error
            demo_tool.main(argv)
        assert e.value.code == 2
    else:
        assert demo_tool.main(argv) == status
    assert words in capsys.readouterr().err


def test_collect_inputs_expands_and_deduplicates(images, tmp_path):
    paths, problems = collect_inputs(
        [str(images / "b.jpg"), str(images),
         str(images / "*.png"), str(tmp_path / "empty*")])
    names = [os.path.basename(p) for p in paths]
    # given order first, folders sorted, each file once; non-images in folders ignored
    assert names == ["b.jpg", "a.png", "c.png", "corrupt.png"]
    assert problems == [(str(tmp_path / "empty*"), "pattern matched no files")]


def test_digits_demo_pictures_show_the_model_rgb(tmp_path, monkeypatch):
    """The digits demo reads BGR for the predictor, which flips for an RGB model: the network
    sees the image's true RGB pixels (it once saw them swapped)."""
    from rgs_detectron.cli import digits_demo
    from rgs_detectron.data.builtin import register_digits
    from rgs_detectron.data.digits import generate_digits_dataset
    from rgs_detectron.data.images import read_image
    from rgs_detectron.engine.predictor import RGSPredictor

    generate_digits_dataset(tmp_path / "rgs_digits", num_train=1, num_val=2, image_size=96, min_scale=12, max_scale=24)
    register_digits(str(tmp_path), prefix="rgs_digits_rgb")
    _, weights, cfg = save_random_detector(tmp_path, "Res-RGS", "FPN", "DATASETS.TEST", ("rgs_digits_rgb_val", ))
    assert cfg.INPUT.FORMAT == "RGB"
    seen = []

    class Recording(RGSPredictor):

        def __init__(self, cfg):
            super().__init__(cfg)
            model = self.model

            def record(inputs):
                seen.append(inputs[0]["image"].clone())
                return model(inputs)

            self.model = record

    monkeypatch.setattr("rgs_detectron.engine.predictor.RGSPredictor", Recording)
    written = digits_demo.draw_predictions(cfg.clone(), str(tmp_path / "pred"), num_images=2)
    assert len(written) == 2 and len(seen) == 2
    files = sorted((tmp_path / "rgs_digits" / "JPEGImages").glob("val_*.jpg"))
    rgb = read_image(str(files[0]), "RGB").transpose(2, 0, 1)
    assert seen[0].shape == rgb.shape  # 96x96: the test-time size, no resize
    assert np.array_equal(seen[0].numpy(), rgb)


@pytest.mark.parametrize("tool", ["demo", "export"])
def test_an_output_path_that_is_a_file_is_one_line(tiny_model, images, tmp_path, capsys, tool):
    """--output naming a file is a usage error saying to give a folder, before any model is built (it was an
    OSError's 'File exists' after building one)."""
    from rgs_detectron.cli import export as export_tool

    config, weights = tiny_model
    a_file = tmp_path / "not_a_folder"
    a_file.write_text("mine")
    main = demo_tool.main if tool == "demo" else export_tool.main
    argv = ["--config-file", config, "--weights", weights, "--output", str(a_file), "--device", "cpu"]
    argv += ["--input", str(images)] if tool == "demo" else ["--format", "torchscript"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"{tool}: error: argument --output: '{a_file}' is a file, not a folder: give the folder to write" in err
    assert "Traceback" not in err and a_file.read_text() == "mine"


def test_the_demo_replaces_files_in_its_output_folder_only_when_asked(tiny_model, images, tmp_path, capsys):
    """A summary.json or <stem>.png already in --output is refused, untouched, without --overwrite (the demo wrote
    over them without a word); with it, they are replaced."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("the user's own")
    (out / "a.png").write_text("the user's picture")
    assert run_demo(tiny_model, "--input", images, "--output", out) == 2
    err = capsys.readouterr().err
    assert "already holds a.png, summary.json, which this run would write: pass --overwrite" in err
    assert (out / "summary.json").read_text() == "the user's own"
    assert (out / "a.png").read_text() == "the user's picture"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "summary.json"]
    assert run_demo(tiny_model, "--input", images, "--output", out, "--overwrite") == 0
    assert json.loads((out / "summary.json").read_text())["complete"]
    assert Image.open(out / "a.png").size == (128, 96)


def test_an_option_after_the_overrides_says_where_options_go(tiny_model, images, tmp_path, capsys):
    """argparse hands an option placed after the KEY VALUE overrides to them: say that options go before."""
    out = tmp_path / "out"
    assert run_demo(tiny_model, "--input", images, "--output", out, "MODEL.DEVICE", "cpu", "--no-progress") == 2
    err = capsys.readouterr().err
    assert "demo: error: --no-progress comes after the KEY VALUE overrides" in err and "options go before" in err
    assert not out.exists()


# --------------------------------------------------------------------------- no random heads outside training


@pytest.fixture(scope="module")
def untrained_heads(tmp_path_factory, tiny_model):
    """{case: weights} that fit the tiny model's backbone but leave a head untrained: ImageNet-style weights
    (the backbone alone) and a trained detector for another class count."""
    folder = tmp_path_factory.mktemp("untrained_heads")
    data = torch.load(tiny_model[1], weights_only=True)
    prefix = "backbone.bottom_up."
    imagenet = folder / "imagenet.pth"
    torch.save(
        {
            "model": {k[len(prefix):]: v for k, v in data["model"].items() if k.startswith(prefix)}, "__author__": "x",
            "matching_heuristics": True
        }, imagenet)
    _, other_classes, _ = save_random_detector(folder, "Res-RGS", "FPN", *SMALL_TEST, "MODEL.ROI_HEADS.NUM_CLASSES", 5)
    return {
        "imagenet": (str(imagenet), "proposal_generator.rpn_head.*, roi_heads.box_head.*"),
        "5 classes": (other_classes, "roi_heads.box_predictor.cls_score.weight: checkpoint (6, 64) vs model (4")
    }


@pytest.mark.parametrize("case", ["imagenet", "5 classes"])
@pytest.mark.parametrize("tool", ["demo", "export", "train_net --eval-only"])
def test_weights_that_leave_a_head_untrained_are_refused(tiny_model, untrained_heads, images, tmp_path, capsys, case,
                                                         tool):
    """Demo, export and evaluation run trained models only; fine-tuning such weights is training's business."""
    from rgs_detectron.cli import export as export_tool
    from rgs_detectron.cli import train_net as train_net_tool

    config, _ = tiny_model
    weights, words = untrained_heads[case]
    out = tmp_path / "out"
    if tool == "demo":
        rc = run_demo((config, weights), "--input", images, "--output", out)
    elif tool == "export":
        rc = export_tool.main(["--config-file", config, "--weights", weights, "--output", str(out), "--device", "cpu"])
    else:
        rc = train_net_tool.main([
            "--config-file", config, "--eval-only", "MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu", "DATASETS.TRAIN",
            "()", "DATASETS.TEST", "()", "OUTPUT_DIR",
            str(out)
        ])
    assert rc == 1
    err = capsys.readouterr().err
    message = err[err.index("error: "):]
    assert "leaves parts of this model untrained" in message and words in message and "Traceback" not in message
    assert not out.exists() or not [p for p in out.iterdir() if p.suffix in (".png", ".json", ".ts", ".onnx")]


@pytest.mark.parametrize("suffix", [".pth", ".pyth", ".pkl"])
def test_a_poisoned_weights_file_never_runs_in_the_demo(tiny_model, images, tmp_path, monkeypatch, capsys, suffix):
    import pickle

    from test_checkpointer import _Poison

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    evil = _Poison()
    evil.marker = str(tmp_path / "PWNED")
    weights = tmp_path / f"weights{suffix}"
    if suffix == ".pkl":
        weights.write_bytes(pickle.dumps({"model": {"x": evil}, "__author__": "evil"}))
    else:
        torch.save({"model_state" if suffix == ".pyth" else "model": {"x": evil}}, weights)
    assert run_demo((tiny_model[0], str(weights)), "--input", images, "--output", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "refused" in err and "weights_only=False" not in err and "will likely succeed" not in err
    assert not (tmp_path / "PWNED").exists()
