"""Built-in digits dataset, COCO minival split tool, dataset-file checks."""
import json
import os
import subprocess
import sys

import pytest

from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.pascal_voc import load_voc_instances

from rgs_detectron.data import DIGIT_CLASSES, check_dataset_files, generate_digits_dataset
from rgs_detectron.engine import check_weights_file

from common import rgs_cfg


def test_digits_dataset_is_deterministic_and_both_layouts_agree(tmp_path):
    a = generate_digits_dataset(tmp_path / "a" / "rgs_digits", num_train=12, num_val=4, image_size=64, min_scale=12, max_scale=24)
    b = generate_digits_dataset(tmp_path / "b" / "rgs_digits", num_train=12, num_val=4, image_size=64, min_scale=12, max_scale=24)
    ja = json.load(open(os.path.join(a, "annotations", "instances_train.json")))
    jb = json.load(open(os.path.join(b, "annotations", "instances_train.json")))
    assert ja == jb and len(ja["images"]) == 12 and len(ja["annotations"]) >= 12
    coco = load_coco_json(os.path.join(a, "annotations", "instances_val.json"), os.path.join(a, "JPEGImages"))
    voc = load_voc_instances(a, "val", DIGIT_CLASSES)
    assert [os.path.basename(r["file_name"]) for r in coco] == [os.path.basename(r["file_name"]) for r in voc]
    for c, v in zip(coco, voc):
        # COCO ids are 1-based (digit + 1); the VOC loader gives contiguous 0-based ids.
        assert [x["category_id"] - 1 for x in c["annotations"]] == [x["category_id"] for x in v["annotations"]]
        for ca, va in zip(c["annotations"], v["annotations"]):
            x, y, w, h = ca["bbox"]
            assert va["bbox"] == pytest.approx([x, y, x + w, y + h], abs=1.0)


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def _coco(ids):
    return {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 10, "height": 10} for i in ids],
        "annotations": [{"id": 100 + i, "image_id": i, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0} for i in ids],
        "categories": [{"id": 1, "name": "thing"}],
    }


def _run_minival(*args):
    return subprocess.run([sys.executable, "tools/make_coco_minival.py", *args], capture_output=True, text=True)


def test_minival_canonical_split(tmp_path):
    val2014 = _write(tmp_path / "instances_val2014.json", _coco(range(1, 41)))
    val2017 = _write(tmp_path / "instances_val2017.json", _coco(range(5, 41, 4)))
    r = _run_minival("--val2014", val2014, "--val2017", val2017)
    assert r.returncode == 0, r.stderr
    mini = json.load(open(tmp_path / "instances_minival2014.json"))
    rest = json.load(open(tmp_path / "instances_valminusminival2014.json"))
    mini_ids = {im["id"] for im in mini["images"]}
    rest_ids = {im["id"] for im in rest["images"]}
    assert mini_ids == set(range(5, 41, 4))
    assert not mini_ids & rest_ids and mini_ids | rest_ids == set(range(1, 41))
    assert {a["image_id"] for a in mini["annotations"]} == mini_ids
    assert mini["categories"] == rest["categories"]

    again = _run_minival("--val2014", val2014, "--val2017", val2017)
    assert again.returncode != 0 and "--overwrite" in again.stderr
    assert _run_minival("--val2014", val2014, "--val2017", val2017, "--overwrite").returncode == 0


def test_minival_deterministic_split_without_val2017(tmp_path):
    val2014 = _write(tmp_path / "instances_val2014.json", _coco(range(1, 41)))
    outs = []
    for d in ("x", "y"):
        r = _run_minival("--val2014", val2014, "--size", "10", "--output-dir", str(tmp_path / d))
        assert r.returncode == 0 and "NOT the canonical" in r.stdout
        outs.append({im["id"] for im in json.load(open(tmp_path / d / "instances_minival2014.json"))["images"]})
    assert outs[0] == outs[1] and len(outs[0]) == 10


def test_minival_missing_input(tmp_path):
    r = _run_minival("--val2014", str(tmp_path / "nope.json"))
    assert r.returncode != 0 and "nope.json" in r.stderr and "does not exist" in r.stderr


@pytest.mark.parametrize("name,hint", [
    ("coco_2014_minival", "tools/make_coco_minival.py"),
    ("coco_2014_valminusminival", "tools/make_coco_minival.py"),
    ("coco_2014_train", "cocodataset.org"),
    ("voc_2007_test", "VOCtest_06-Nov-2007.tar"),
    ("voc_2007_trainval", "VOCtrainval_06-Nov-2007.tar"),
])
def test_missing_dataset_files_are_named_with_a_fix(name, hint, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # Detectron2's builtin paths are relative to datasets/
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_files([name])
    assert name in str(err.value) and hint in str(err.value)


def test_missing_digits_and_unknown_dataset(tmp_path):
    from rgs_detectron.data.builtin import register_digits

    register_digits(str(tmp_path), prefix="rgs_digits_missing")
    with pytest.raises(FileNotFoundError) as err:
        check_dataset_files(["rgs_digits_missing_train", "no_such_dataset"])
    msg = str(err.value)
    assert "tools/make_digits_dataset.py" in msg and "'no_such_dataset' is not registered" in msg


def test_missing_weights_say_how_to_convert(tmp_path):
    cfg = rgs_cfg("MODEL.WEIGHTS", str(tmp_path / "res_rgs_50.pth"))
    with pytest.raises(FileNotFoundError) as err:
        check_weights_file(cfg)
    assert "tools/convert_rgsnet_to_d2.py" in str(err.value) and "res_rgs_50.pth" in str(err.value)
