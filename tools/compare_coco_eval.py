"""Time pycocotools against faster-coco-eval on a synthetic COCO-sized bbox evaluation.

Both engines run through ``rgs_detectron.engine.evaluation.evaluate_on_coco`` (the code the
evaluator uses), on the same ground truth and detections; the 12 summary stats must agree
to ``--tol`` or the script exits 1. Timed per engine: loadRes + evaluate + accumulate +
summarize (what one evaluation costs once the ground truth is loaded); ground-truth
loading is reported separately. Default sizes follow COCO minival: 5,000 images, ~7
boxes each, 80 classes, 100 detections per image (Detectron2's TEST.DETECTIONS_PER_IMAGE).

    python tools/compare_coco_eval.py                 # median of 3 runs per engine
    python tools/compare_coco_eval.py --repeats 1 --images 500
"""
import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import time

import numpy as np

from rgs_detectron.engine.evaluation import evaluate_on_coco, load_coco_gt, resolve_engine
from rgs_detectron.utils.commandline import run_tool

from benchmark import cpu_model  # tools/benchmark.py, beside this file

ENGINES = ("pycocotools", "faster_coco_eval")
STAT_NAMES = [
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
]
IMAGE_SIZES = [(480, 640), (640, 480), (427, 640), (640, 427), (512, 512)]


def make_ground_truth(rng, num_images, boxes_per_image, num_classes):
    """COCO-style ground truth with small, medium and large boxes and a few crowd regions."""
    images, annotations = [], []
    for img_id in range(1, num_images + 1):
        h, w = IMAGE_SIZES[img_id % len(IMAGE_SIZES)]
        images.append({"id": img_id, "file_name": f"{img_id:012d}.jpg", "height": h, "width": w})
        n = max(1, rng.poisson(boxes_per_image))
        side = np.exp(rng.uniform(np.log(8), np.log(400), n))  # log-uniform sqrt(area)
        aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3), n))
        bw = np.minimum(side * np.sqrt(aspect), w - 1)
        bh = np.minimum(side / np.sqrt(aspect), h - 1)
        x = rng.uniform(0, w - bw)
        y = rng.uniform(0, h - bh)
        cats = rng.integers(1, num_classes + 1, n)
        crowd = rng.random(n) < 0.01
        for i in range(n):
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": img_id,
                "category_id": int(cats[i]),
                "bbox": [float(x[i]), float(y[i]), float(bw[i]), float(bh[i])],
                "area": float(bw[i] * bh[i]),
                "iscrowd": int(crowd[i]),
            })
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in range(1, num_classes + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}


def make_detections(rng, gt, dets_per_image, num_classes, copies_per_gt=3):
    """Noisy copies of each ground-truth box (some with a wrong class) plus false positives."""
    by_image = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    results = []
    for img in gt["images"]:
        anns = by_image.get(img["id"], [])
        boxes, cats, scores = [], [], []
        for ann in anns[:dets_per_image // copies_per_gt]:
            x, y, w, h = ann["bbox"]
            for _ in range(copies_per_gt):
                jitter = rng.normal(0, 0.12, 4) * [w, h, w, h]
                boxes.append([x + jitter[0], y + jitter[1], max(1.0, w + jitter[2]), max(1.0, h + jitter[3])])
                wrong = rng.random() < 0.1
                cats.append(int(rng.integers(1, num_classes + 1)) if wrong else ann["category_id"])
                scores.append(float(rng.uniform(0.2, 1.0)))
        n_fp = dets_per_image - len(boxes)
        if n_fp > 0:
            fw = rng.uniform(4, img["width"] / 2, n_fp)
            fh = rng.uniform(4, img["height"] / 2, n_fp)
            fx = rng.uniform(0, img["width"] - fw)
            fy = rng.uniform(0, img["height"] - fh)
            boxes += np.stack([fx, fy, fw, fh], 1).tolist()
            cats += rng.integers(1, num_classes + 1, n_fp).tolist()
            scores += rng.uniform(0.0, 0.7, n_fp).tolist()
        for box, cat, score in zip(boxes, cats, scores):
            results.append({
                "image_id": img["id"], "category_id": int(cat), "bbox": [float(v) for v in box], "score": float(score)
            })
    return results


def time_engine(engine, gt, results, repeats):
    """(GT load seconds, list of evaluation seconds, stats of the last run)."""
    t0 = time.perf_counter()
    coco_gt = load_coco_gt(gt, engine)
    load_s = time.perf_counter() - t0
    times, stats = [], None
    for _ in range(repeats):
        fresh = [dict(r) for r in results]  # loadRes writes into the dicts; not timed
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            coco_eval = evaluate_on_coco(coco_gt, fresh, "bbox", engine)
        times.append(time.perf_counter() - t0)
        stats = np.asarray(coco_eval.stats[:12], dtype=np.float64)
        del coco_eval, fresh
    return load_s, times, stats


def _main(argv):
    parser = argparse.ArgumentParser(prog="compare_coco_eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--boxes-per-image", type=float, default=7.0, help="mean ground-truth boxes per image")
    parser.add_argument("--dets-per-image", type=int, default=100)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine; the median is reported")
    parser.add_argument("--tol", type=float, default=1e-4, help="largest allowed difference of any stat")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    resolve_engine("faster_coco_eval")  # fail early, with advice, if it is missing

    from importlib.metadata import version

    rng = np.random.default_rng(args.seed)
    gt = make_ground_truth(rng, args.images, args.boxes_per_image, args.classes)
    results = make_detections(rng, gt, args.dets_per_image, args.classes)
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs visible)")
    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"pycocotools {version('pycocotools')}, faster-coco-eval {version('faster-coco-eval')}")
    print(f"data: {len(gt['images'])} images, {len(gt['annotations'])} GT boxes, "
          f"{args.classes} classes, {len(results)} detections; median of {args.repeats} run(s) per engine")

    timing, stats = {}, {}
    for engine in ENGINES:
        load_s, times, stats[engine] = time_engine(engine, gt, results, args.repeats)
        timing[engine] = statistics.median(times)
        runs = ", ".join(f"{t:.2f}" for t in times)
        print(f"{engine:>17}: eval {timing[engine]:7.2f} s (runs: {runs}); GT load {load_s:.2f} s")

    diff = np.abs(stats["faster_coco_eval"] - stats["pycocotools"])
    print(f"speed-up: {timing['pycocotools'] / timing['faster_coco_eval']:.1f}x")
    print(f"{'stat':>6} {'pycocotools':>12} {'faster':>12} {'|diff|':>9}")
    for name, a, b, d in zip(STAT_NAMES, stats["pycocotools"], stats["faster_coco_eval"], diff):
        print(f"{name:>6} {a:12.6f} {b:12.6f} {d:9.2e}")
    if not np.all(diff <= args.tol):
        print(f"FAIL: stats differ by up to {diff.max():.2e} (> {args.tol:g})")
        return 1
    print(f"OK: all 12 stats agree within {args.tol:g} (largest difference {diff.max():.2e})")
    return 0


def main(argv=None):
    return run_tool(_main, argv, "compare_coco_eval")


if __name__ == "__main__":
    sys.exit(main())
