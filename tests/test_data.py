"""Built-in digits dataset, COCO minival split tool, dataset-file checks."""
import json
import os
import sys

import numpy as np
import pytest

from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.pascal_voc import load_voc_instances

from rgs_detectron.checkpoint import check_weights_file
from rgs_detectron.data.checks import check_dataset_files
from rgs_detectron.data.digits import CLASS_NAMES as DIGIT_CLASSES
from rgs_detectron.data.digits import generate_digits_dataset
from rgs_detectron.errors import InputError, WeightsError


def test_digits_dataset_is_deterministic_and_both_layouts_agree(tmp_path):
    a = generate_digits_dataset(tmp_path / "a" / "rgs_digits", num_train=12, num_val=4, image_size=64, min_scale=12,
                                max_scale=24)
    b = generate_digits_dataset(tmp_path / "b" / "rgs_digits", num_train=12, num_val=4, image_size=64, min_scale=12,
                                max_scale=24)
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
        "annotations": [
            {"id": 100 + i, "image_id": i, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0} for i in ids
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }


class _Result:

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _run_minival(*args):
    """The command line in-process (its own process only costs imports here)."""
    import contextlib
    import io

    from rgs_detectron.cli import make_coco_minival

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = make_coco_minival.main(list(args))
    return _Result(code, out.getvalue(), err.getvalue())


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
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert _run_minival("--val2014", val2014, "--val2017", val2017, "--overwrite").returncode == 0


def test_minival_deterministic_split_without_val2017(tmp_path):
    val2014 = _write(tmp_path / "instances_val2014.json", _coco(range(1, 41)))
    outs = []
    for d in ("x", "y"):
        r = _run_minival("--val2014", val2014, "--size", "10", "--output", str(tmp_path / d))
        assert r.returncode == 0 and "NOT the canonical" in r.stdout
        outs.append({im["id"] for im in json.load(open(tmp_path / d / "instances_minival2014.json"))["images"]})
    assert outs[0] == outs[1] and len(outs[0]) == 10


def test_minival_missing_input(tmp_path):
    r = _run_minival("--val2014", str(tmp_path / "nope.json"))
    assert r.returncode == 1 and "nope.json" in r.stderr and "does not exist" in r.stderr


@pytest.mark.parametrize("name,hint", [
    ("coco_2014_minival", "python -m rgs_detectron.cli.make_coco_minival"),
    ("coco_2014_valminusminival", "python -m rgs_detectron.cli.make_coco_minival"),
    ("coco_2014_train", "cocodataset.org"),
    ("voc_2007_test", "VOCtest_06-Nov-2007.tar"),
    ("voc_2007_trainval", "VOCtrainval_06-Nov-2007.tar"),
])
def test_missing_dataset_files_are_named_with_a_fix(name, hint, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # Detectron2's builtin paths are relative to datasets/
    with pytest.raises(InputError) as err:
        check_dataset_files([name])
    assert name in str(err.value) and hint in str(err.value)


def test_the_minival_hint_names_the_folder_the_dataset_is_read_from(tmp_path):
    from detectron2.data.datasets import register_coco_instances

    annotations = tmp_path / "elsewhere" / "coco" / "annotations"
    register_coco_instances("rgs_test_minival_elsewhere", {}, str(annotations / "instances_minival2014.json"),
                            str(tmp_path))
    with pytest.raises(InputError) as err:
        check_dataset_files(["rgs_test_minival_elsewhere"])
    assert f"--val2014 {annotations / 'instances_val2014.json'} [--val2017 {annotations / 'instances_val2017.json'}]" \
        in str(err.value)


def test_missing_digits_and_unknown_dataset(tmp_path):
    from rgs_detectron.data.builtin import register_digits

    register_digits(str(tmp_path), prefix="rgs_digits_missing")
    with pytest.raises(InputError) as err:
        check_dataset_files(["rgs_digits_missing_train", "no_such_dataset"])
    msg = str(err.value)
    assert "python -m rgs_detectron.cli.make_digits" in msg and "'no_such_dataset' is not registered" in msg


def test_missing_weights_say_how_to_convert(tmp_path):
    with pytest.raises(WeightsError) as err:
        check_weights_file(str(tmp_path / "res_rgs_50.pth"))
    assert "python -m rgs_detectron.cli.convert" in str(err.value) and "res_rgs_50.pth" in str(err.value)


# --------------------------------------------------------------------------- nothing lost, nothing silent


def test_digits_generator_never_deletes_what_it_did_not_write(tmp_path):
    datasets = tmp_path / "datasets"
    (datasets / "coco" / "annotations").mkdir(parents=True)
    precious = datasets / "coco" / "annotations" / "instances_train2014.json"
    precious.write_text("{}")
    with pytest.raises(InputError, match="not a digits dataset written by this tool"):
        generate_digits_dataset(datasets, num_train=2, num_val=1, image_size=64, min_scale=12, max_scale=24)
    assert precious.read_text() == "{}" and sorted(os.listdir(datasets)) == ["coco"]
    # Its own dataset, even with overwrite, and an empty folder are fine.
    own = datasets / "rgs_digits"
    own.mkdir()
    generate_digits_dataset(own, num_train=2, num_val=1, image_size=64, min_scale=12, max_scale=24)
    generate_digits_dataset(own, num_train=3, num_val=1, image_size=64, min_scale=12, max_scale=24, overwrite=True)
    assert len(json.load(open(own / "annotations" / "instances_train.json"))["images"]) == 3
    # A user file inside its folder, or inside one of its subfolders, makes it foreign again.
    for mine in (own / "mine.txt", own / "JPEGImages" / "mine.jpg", own / "ImageSets" / "Main" / "mine" / "a.txt"):
        mine.parent.mkdir(parents=True, exist_ok=True)
        mine.write_text("keep")
        with pytest.raises(InputError, match=str(mine.relative_to(own))):
            generate_digits_dataset(own, num_train=2, num_val=1, image_size=64, overwrite=True)
        assert mine.read_text() == "keep"
        mine.unlink()


def test_make_digits_cli_refuses_a_foreign_root_with_status_1(tmp_path, capsys):
    from rgs_detectron.cli import make_digits

    (tmp_path / "other.txt").write_text("x")
    assert make_digits.main(["--root", str(tmp_path)]) == 1  # run_tool's exit status, as a process would give
    assert "make_digits: error:" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["other.txt"]


def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    from PIL import Image

    from rgs_detectron.data.images import read_image

    values = np.full((32, 48), 30 * 257, dtype=np.uint16)  # 8-bit value 30 stored in 16 bits
    values[:, :8] = 65535
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = read_image(str(tmp_path / "deep.png"), "BGR")
    assert image.shape == (32, 48, 3) and image.dtype == np.uint8
    assert image[:, 8:].mean() == pytest.approx(30, abs=0.5) and image[:, :8].min() == 255


def test_corrupt_image_is_named(tmp_path):
    from rgs_detectron.data.images import read_image

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError, match="broken.jpg"):
        read_image(str(bad))


def test_mapper_reads_16_bit_images_and_names_bad_files(tmp_path):
    from PIL import Image

    from rgs_detectron.data.mapper import RGSDatasetMapper

    from common import tiny_detector_cfg

    Image.fromarray(np.full((64, 64), 100 * 257, dtype=np.uint16)).save(tmp_path / "a.png")
    cfg = tiny_detector_cfg()
    mapper = RGSDatasetMapper(cfg, is_train=True)
    record = {
        "file_name": str(tmp_path / "a.png"), "height": 64, "width": 64, "image_id": 1,
        "annotations": [{"bbox": [4, 4, 20, 20], "bbox_mode": 1, "category_id": 0}]
    }
    out = mapper(record)
    assert out["image"].float().mean().item() == pytest.approx(100, abs=1)
    assert len(out["instances"]) == 1
    (tmp_path / "b.png").write_bytes(b"nope")
    with pytest.raises(InputError, match="b.png"):
        mapper({**record, "file_name": str(tmp_path / "b.png")})


def _record(*boxes, size=100):
    return {
        "file_name": "img.jpg", "width": size, "height": size,
        "annotations": [{"bbox": list(b), "bbox_mode": 1, "category_id": 0} for b in boxes]
    }  # XYWH_ABS


def test_invalid_boxes_are_reported_and_dropped_never_rewritten(caplog):
    from rgs_detectron.data.boxes import check_boxes

    caplog.set_level("INFO", logger="rgs_detectron")
    good, clipped = (10, 10, 20, 20), (90, 90, 20, 20)
    records = [_record(good, (50, 50, -10, 5), clipped), _record((5, 5, 0, 10)), _record((150, 150, 10, 10), good)]
    out = check_boxes(records, "DATASETS.TRAIN ['x']")
    kept = [[a["bbox"] for a in r["annotations"]] for r in out]
    assert kept == [[list(good), list(clipped)], [], [list(good)]]
    assert records[0]["annotations"][1]["bbox"] == [50, 50, -10, 5]  # the input is not modified
    text = caplog.text
    assert "dropped 3 invalid boxes" in text and "1 negative width or height" in text
    assert "1 zero width or height" in text and "1 wholly outside the image" in text
    assert "1 boxes extend past their image" in text
    with pytest.raises(InputError, match="3 invalid boxes.*DATASETS.INVALID_BOXES"):
        check_boxes(records, "DATASETS.TRAIN ['x']", policy="fail")
    assert check_boxes([_record(good)], "x", policy="fail")[0]["annotations"][0]["bbox"] == list(good)


def test_boxes_that_are_not_four_numbers_are_reported_and_dropped(caplog):
    """A box of strings or of 3 numbers crashed the check (TypeError, ValueError): counted, reported as the others."""
    from rgs_detectron.data.boxes import check_boxes

    caplog.set_level("INFO", logger="rgs_detectron")
    good = (10, 10, 20, 20)
    bad = [["10", "10", "20", "20"], [10, 10, 20], None, 7]
    records = [{**_record(good), "annotations": [*_record(good)["annotations"], *({"bbox": b} for b in bad)]}]
    out = check_boxes(records, "DATASETS.TRAIN ['x']")
    assert [a["bbox"] for a in out[0]["annotations"]] == [list(good)]
    assert "dropped 4 invalid boxes: 4 not four numbers (e.g. img.jpg bbox ['10', '10', '20', '20'])" in caplog.text
    with pytest.raises(InputError, match=r"1 invalid boxes: 1 not four numbers \(e.g. img.jpg bbox \[10, 10, 20\]\)"):
        check_boxes([{**_record(), "annotations": [{"bbox": [10, 10, 20]}]}], "x", policy="fail")


def test_nan_and_infinite_boxes_are_reported_and_dropped(caplog):
    from rgs_detectron.data.boxes import check_boxes

    caplog.set_level("INFO", logger="rgs_detectron")
    good = (10, 10, 20, 20)
    out = check_boxes([_record(good, (float("nan"), 5, 10, 10), (5, 5, float("inf"), 10))], "DATASETS.TRAIN ['x']")
    assert [a["bbox"] for a in out[0]["annotations"]] == [list(good)]
    assert "dropped 2 invalid boxes: 2 NaN or infinite coordinates" in caplog.text
    with pytest.raises(InputError, match="1 invalid boxes: 1 NaN or infinite coordinates"):
        check_boxes([_record((5, 5, 10, float("-inf")))], "x", policy="fail")


def test_corrupt_test_set_json_is_found_before_training(tmp_path):
    from detectron2.data.datasets import register_coco_instances

    (tmp_path / "images").mkdir()
    bad = tmp_path / "instances_val.json"
    bad.write_text('{"images": [], "annotations": [')  # truncated
    register_coco_instances("rgs_test_corrupt_json", {}, str(bad), str(tmp_path / "images"))
    with pytest.raises(InputError, match="instances_val.json is not valid JSON"):
        check_dataset_files(["rgs_test_corrupt_json"])
    bad.write_text('{"images": []}')
    with pytest.raises(InputError, match="not a COCO annotation file: it has no annotations, categories"):
        check_dataset_files(["rgs_test_corrupt_json"])


def test_label_maps_keep_their_class_ids(tmp_path):
    from PIL import Image

    from rgs_detectron.data.images import read_label_map

    labels = np.full((8, 8), 300, dtype=np.uint16)
    labels[0, 0] = 7
    Image.fromarray(labels).save(tmp_path / "labels.png")
    read = read_label_map(str(tmp_path / "labels.png"))
    assert read[0, 0] == 7 and read[1, 1] == 300


# --------------------------------------------------------------------------- make_digits: what it was asked for


def test_make_digits_keeps_a_dataset_only_when_it_has_the_parameters_asked_for(tmp_path, capsys):
    from rgs_detectron.cli import make_digits

    root = tmp_path / "rgs_digits"
    small = [
        "--root",
        str(root), "--num-train", "2", "--num-val", "1", "--image-size", "64", "--min-scale", "12", "--max-scale", "24"
    ]
    assert make_digits.main(small) == 0
    marker = json.loads((root / ".complete").read_text())
    assert marker["num_train"] == 2 and marker["max_scale"] == 24 and marker["seed"] == 0
    # The same request, or one naming fewer options, keeps it.
    assert make_digits.main(small) == 0 and make_digits.main(["--root", str(root), "--num-val", "1"]) == 0
    # Other values are refused, naming each, and change nothing (--num-train and --seed were silently ignored).
    assert make_digits.main([*small, "--num-train", "3", "--seed", "1"]) == 1
    err = capsys.readouterr().err
    assert "--num-train 3 (the dataset: 2); --seed 1 (the dataset: 0). Pass --overwrite to regenerate it" in err
    assert json.loads((root / ".complete").read_text()) == marker
    assert make_digits.main([*small, "--num-train", "3", "--overwrite"]) == 0
    assert len(json.load(open(root / "annotations" / "instances_train.json"))["images"]) == 3


@pytest.mark.parametrize("options, message", [
    (["--num-train", "-5"], "--num-train -5 is invalid: give 1 or more"),
    (["--num-val", "0"], "--num-val 0 is invalid"),
    (["--image-size", "10"], "--min-scale 20, --max-scale 48, --image-size 10 are invalid"),
    (["--image-size", "64", "--min-scale", "4", "--max-scale", "24"], "give 8 <= --min-scale <= --max-scale"),
    (["--min-scale", "30", "--max-scale", "24"], "--min-scale 30, --max-scale 24, --image-size 128 are invalid"),
])
def test_make_digits_impossible_values_are_usage_errors_and_write_nothing(tmp_path, capsys, options, message):
    from rgs_detectron.cli import make_digits

    assert make_digits.main(["--root", str(tmp_path / "rgs_digits"), *options]) == 2
    assert message in capsys.readouterr().err and os.listdir(tmp_path) == []


def test_without_opencv_the_digits_dataset_and_the_pictures_say_how_to_get_it(tmp_path, monkeypatch):
    """OpenCV is an extra: where it is needed and missing, one message names the extra; nothing is left behind."""
    import numpy as np

    from detectron2.data.catalog import Metadata
    from detectron2.structures import Instances

    from rgs_detectron.errors import UserError
    from rgs_detectron.utils.drawing import draw_detections

    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(UserError, match=r"digits dataset.*needs cv2.*rgs_detectron\[opencv\]"):
        generate_digits_dataset(tmp_path / "digits", num_train=1, num_val=1, image_size=32, min_scale=8, max_scale=16)
    assert not any(tmp_path.iterdir())
    with pytest.raises(UserError, match=r"drawing detections.*needs cv2"):
        draw_detections(np.zeros((8, 8, 3), np.uint8), Instances((8, 8)), Metadata())
