"""tools/demo.py on a folder of generated images, with a corrupt file and a missing path."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import MetadataCatalog

from rgs_detectron.demo import collect_inputs

from common import save_random_detector

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import demo as demo_tool  # noqa: E402  (tools/demo.py)

DATASET = "rgs_test_demo_names"
CLASS_NAMES = ["cat", "dog", "bird"]

# A tiny RGS Faster R-CNN FPN; GroupNorm needs >= 32 channels at the stem and bottleneck.
TINY_YAML = f"""\
_BASE_: "{ROOT / 'configs' / 'Base-RGSNet-FPN.yaml'}"
MODEL:
  DEVICE: "cpu"
  RESNETS: {{DEPTH: 26, STEM_OUT_CHANNELS: 32, RES2_OUT_CHANNELS: 64, WIDTH_PER_GROUP: 32, NORM: "GN"}}
  BACKBONE: {{FREEZE_AT: 0}}
  FPN: {{OUT_CHANNELS: 32}}
  RPN: {{PRE_NMS_TOPK_TEST: 200, POST_NMS_TOPK_TEST: 50}}
  ROI_HEADS: {{NUM_CLASSES: 3}}
  ROI_BOX_HEAD: {{FC_DIM: 64}}
DATASETS: {{TEST: ["{DATASET}"]}}
INPUT: {{MIN_SIZE_TEST: 128, MAX_SIZE_TEST: 192}}
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """(config file, weights file) of a random-weight tiny detector."""
    config, weights, _ = save_random_detector(tmp_path_factory.mktemp("tiny_model"), TINY_YAML)
    MetadataCatalog.get(DATASET).thing_classes = CLASS_NAMES
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


def test_demo_folder_with_corrupt_and_missing_inputs(tiny_model, images, tmp_path, capsys):
    config, weights = tiny_model
    out = tmp_path / "out"
    missing = str(tmp_path / "does_not_exist.jpg")
    rc = demo_tool.main(
        [
            "--config-file", config, "--weights", weights,
            "--input", str(images), missing, str(images / "*.jpg"), str(tmp_path / "*.none"),
            "--output", str(out), "--confidence-threshold", "0.05", "--device", "cpu", "--no-progress",
        ]
    )
    assert rc == 0
    captured = capsys.readouterr()
    assert "Processed 3 image(s)" in captured.out and "skipped 3" in captured.out
    assert "corrupt.png" in captured.err and "does_not_exist.jpg" in captured.err

    # One drawing per processed image, at the image's own size.
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png", "c.png"]
    with Image.open(out / "b.png") as drawn:
        assert drawn.size == (110, 150)

    summary = json.loads((out / "summary.json").read_text())
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
    config, weights = tiny_model
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    out = tmp_path / "out"
    rc = demo_tool.main(
        ["--config-file", config, "--weights", weights, "--input", str(bad), str(tmp_path / "missing.png"),
         "--output", str(out), "--device", "cpu", "--no-progress"]
    )
    assert rc == 1
    assert "Processed 0 image(s)" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == [] and len(summary["skipped"]) == 2
    assert json.loads((out / "detections.json").read_text()) == []


def test_demo_bad_weights_is_a_usage_error(tiny_model, images, tmp_path, capsys):
    config, _ = tiny_model
    rc = demo_tool.main(
        ["--config-file", config, "--weights", str(tmp_path / "nope.pth"), "--input", str(images),
         "--output", str(tmp_path / "out"), "--device", "cpu"]
    )
    assert rc == 2
    assert "weights file not found" in capsys.readouterr().err


def test_collect_inputs_expands_and_deduplicates(images, tmp_path):
    paths, problems = collect_inputs(
        [str(images / "b.jpg"), str(images), str(images / "*.png"), str(tmp_path / "empty*")]
    )
    names = [os.path.basename(p) for p in paths]
    # given order first, folders sorted, each file once; non-images in folders ignored
    assert names == ["b.jpg", "a.png", "c.png", "corrupt.png"]
    assert problems == [(str(tmp_path / "empty*"), "pattern matched no files")]
