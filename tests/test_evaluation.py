"""RGSCOCOEvaluator: both COCOeval engines give Detectron2's results, number for number."""
import json
import math
import sys
import uuid

import numpy as np
import pytest
import torch

from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, Instances

from rgs_detectron.engine.evaluation import (
    RGSCOCOEvaluator,
    build_coco_evaluator,
    evaluate_on_coco,
    load_coco_gt,
    resolve_engine,
)
from rgs_detectron.errors import ConfigError

pytestmark = pytest.mark.skipif(not resolve_engine("auto") == "faster_coco_eval",
                                reason="faster-coco-eval is not installed")

# Non-contiguous dataset ids, as in COCO, so the id mapping is exercised.
CATEGORY_IDS = [1, 3, 7]
NUM_IMAGES = 12


def _make_gt(rng):
    images, annotations = [], []
    for img_id in range(1, NUM_IMAGES + 1):
        h, w = 240, 320
        images.append({"id": img_id, "file_name": f"{img_id}.jpg", "height": h, "width": w})
        for _ in range(rng.integers(1, 6)):
            # sizes spanning small / medium / large
            bw, bh = rng.uniform(8, 150, size=2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": img_id,
                "category_id": int(rng.choice(CATEGORY_IDS)),
                "bbox": [float(x), float(y), float(bw), float(bh)],
                "area": float(bw * bh),
                "iscrowd": int(rng.random() < 0.05),
            })
    categories = [{"id": c, "name": f"class{c}"} for c in CATEGORY_IDS]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A registered COCO-json dataset and model-style outputs for each of its images."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("coco_eval")
    gt = _make_gt(rng)
    json_file = root / "instances.json"
    json_file.write_text(json.dumps(gt))
    name = f"rgs_test_coco_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, str(json_file), str(root))
    DatasetCatalog.get(name)  # fills thing_classes and the id mapping in the metadata
    to_contiguous = MetadataCatalog.get(name).thing_dataset_id_to_contiguous_id

    samples = []
    for img in gt["images"]:
        boxes, scores, classes = [], [], []
        for ann in (a for a in gt["annotations"] if a["image_id"] == img["id"]):
            x, y, w, h = ann["bbox"]
            for _ in range(2):  # noisy copies: some match at IoU .5 only, some at .9
                jitter = rng.normal(0, 0.08, size=4) * [w, h, w, h]
                boxes.append([x + jitter[0], y + jitter[1], x + w + jitter[2], y + h + jitter[3]])
                scores.append(rng.uniform(0.3, 1.0))
                classes.append(to_contiguous[ann["category_id"]])
        for _ in range(4):  # false positives
            x, y = rng.uniform(0, 250), rng.uniform(0, 180)
            boxes.append([x, y, x + rng.uniform(5, 70), y + rng.uniform(5, 60)])
            scores.append(rng.uniform(0.05, 0.8))
            classes.append(int(rng.integers(0, len(CATEGORY_IDS))))
        inst = Instances((img["height"], img["width"]))
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.scores = torch.tensor(scores, dtype=torch.float32)
        inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
        samples.append(({"image_id": img["id"]}, {"instances": inst}))
    return name, json_file, gt, samples


def _run(evaluator, samples):
    evaluator.reset()
    for inp, out in samples:
        evaluator.process([inp], [out])
    return evaluator.evaluate()


def _assert_same(a, b, tol=1e-4):
    assert a.keys() == b.keys()
    for task in a:
        assert a[task].keys() == b[task].keys(), task
        for k in a[task]:
            x, y = a[task][k], b[task][k]
            assert (math.isnan(x) and math.isnan(y)) or abs(x - y) <= tol, (task, k, x, y)


def test_engines_match_detectron2(dataset, tmp_path):
    name, _, _, samples = dataset
    reference = _run(COCOEvaluator(name, distributed=False, use_fast_impl=False), samples)
    fast = RGSCOCOEvaluator(name, distributed=False, output_dir=str(tmp_path), engine="faster_coco_eval")
    assert fast.engine == "faster_coco_eval"
    fast_results = _run(fast, samples)
    slow_results = _run(RGSCOCOEvaluator(name, distributed=False, engine="pycocotools"), samples)

    assert set(reference["bbox"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert {f"AP-class{c}" for c in CATEGORY_IDS} <= set(reference["bbox"])
    assert 5 < reference["bbox"]["AP"] < 95  # a non-trivial score, so the comparison means something
    _assert_same(fast_results, reference)
    _assert_same(slow_results, reference)

    # Results file, in dataset category ids, as Detectron2 writes it.
    saved = json.loads((tmp_path / "coco_instances_results.json").read_text())
    assert len(saved) == sum(len(out["instances"]) for _, out in samples)
    assert {r["category_id"] for r in saved} <= set(CATEGORY_IDS)

    # evaluate() may be called again on the same predictions.
    _assert_same(fast.evaluate(), reference)


def test_custom_max_dets_and_img_ids_match(dataset):
    """A custom per-image limit (COCOevalMaxDets in pycocotools) and an image subset agree."""
    _, json_file, _, samples = dataset
    from detectron2.evaluation.coco_evaluation import instances_to_coco_json

    results = []
    for inp, out in samples:
        results += instances_to_coco_json(out["instances"], inp["image_id"])
    for r in results:
        r["category_id"] = CATEGORY_IDS[r["category_id"]]
    for kwargs in ({"max_dets_per_image": [1, 10, 5]}, {"img_ids": [2, 3, 5, 8]}):
        stats = {}
        for engine in ("pycocotools", "faster_coco_eval"):
            gt = load_coco_gt(str(json_file), engine)
            ev = evaluate_on_coco(gt, [dict(r) for r in results], "bbox", engine, **kwargs)
            stats[engine] = np.asarray(ev.stats[:12])
        np.testing.assert_allclose(stats["faster_coco_eval"], stats["pycocotools"], atol=1e-4, rtol=0)


def test_no_detections_gives_nan_like_detectron2(dataset):
    name, _, _, samples = dataset
    empty = [(inp, {"instances": out["instances"][:0]}) for inp, out in samples]
    reference = _run(COCOEvaluator(name, distributed=False, use_fast_impl=False), empty)
    fast = _run(RGSCOCOEvaluator(name, distributed=False, engine="faster_coco_eval"), empty)
    _assert_same(fast, reference)
    assert all(math.isnan(v) for v in fast["bbox"].values())


def test_engine_selection(dataset, monkeypatch):
    name = dataset[0]
    assert resolve_engine("auto") == "faster_coco_eval"
    assert resolve_engine("PyCocoTools") == "pycocotools"
    with pytest.raises(ConfigError, match="choose one of"):
        resolve_engine("fast")
    with pytest.raises(TypeError, match="engine="):
        RGSCOCOEvaluator(name, distributed=False, use_fast_impl=True)

    cfg = get_cfg()
    assert build_coco_evaluator(cfg, name, None, distributed=False).engine == "faster_coco_eval"
    cfg.TEST.COCO_EVAL_ENGINE = "pycocotools"
    assert build_coco_evaluator(cfg, name, None, distributed=False).engine == "pycocotools"

    # Without the package, "auto" falls back and an explicit request fails with advice.
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)
    assert resolve_engine("auto") == "pycocotools"
    with pytest.raises(ConfigError, match="pip install faster-coco-eval"):
        RGSCOCOEvaluator(name, distributed=False, engine="faster_coco_eval")
