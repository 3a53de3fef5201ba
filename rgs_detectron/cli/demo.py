"""Detect objects in your own images with a trained RGSNet detector.

    python -m rgs_detectron.cli.demo --config-file configs/coco_res_rgs_50_fpn.yaml \\
        --weights output/model_final.pth --input photos/ "more/*.jpg" one.png --output demo_out \\
        [--confidence-threshold 0.5] [--compile] [--device auto] [--overwrite] [KEY VALUE ...]

Writes into ``--output`` (a folder): ``<name>.png`` per image with the detections drawn
(large images drawn scaled down), ``detections.json`` (COCO results format) and
``summary.json`` (every processed image, every skipped input with the reason, the
categories and settings). An input that is missing, unreadable or that the model
cannot process is reported and skipped; the JSON files cover everything done, even
when the run is interrupted. A file of these names already in ``--output`` is replaced only
with ``--overwrite``, and an input image never. The weights
must be a trained detector's, every tensor of the model (``load_trained_model``): no head
runs with random weights. Exit status: 0 at least one image processed, 1 none could be,
2 usage error.
"""
import argparse
import glob
import json
import logging
import os
import sys

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import ConfigError, UserError, first_line
from ..utils.commandline import add_config_args, output_folder, probability, run_tool
from ..utils.fileio import atomic_write

RESULT_FILES = ["detections.json", "summary.json"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
logger = logging.getLogger("rgs_detectron.demo")


def get_parser():
    p = argparse.ArgumentParser(prog="demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="trained detector checkpoint (overrides MODEL.WEIGHTS)")
    p.add_argument("--input", nargs="+", required=True, help="image files, folders and/or glob patterns (quote globs)")
    p.add_argument("--output", required=True, type=output_folder, help="folder for the drawn images and the JSON files")
    p.add_argument("--overwrite", action="store_true", help="replace files of the same names in --output")
    p.add_argument("--confidence-threshold", type=probability, default=0.5,
                   help="minimum score of a detection to keep, in [0, 1] (default 0.5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone (docs/USAGE.md)")
    return add_config_args(p)


def collect_inputs(specs):
    """Expand files, folders (their images, not recursive) and globs, in order, without duplicates.

    Returns ``(paths, problems)``; ``problems`` holds ``(spec, reason)`` for each spec that gave no file.
    """
    paths, problems, seen = [], [], set()
    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(os.path.join(spec, n) for n in os.listdir(spec) if n.lower().endswith(IMAGE_EXTENSIONS))
            found = [p for p in found if os.path.isfile(p)]
            if not found:
                problems.append((spec, "folder holds no image files (" + ", ".join(IMAGE_EXTENSIONS) + ")"))
        elif os.path.isfile(spec):
            found = [spec]
        elif glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not found:
                problems.append((spec, "pattern matched no files"))
        else:
            found = []
            problems.append((spec, "no such file or folder"))
        for p in found:
            if os.path.realpath(p) not in seen:
                seen.add(os.path.realpath(p))
                paths.append(p)
    return paths, problems


def output_names(paths):
    """``<stem>``, made unique with ``_1``, ``_2``... per input path."""
    names, used = [], set()
    for path in paths:
        name = stem = os.path.splitext(os.path.basename(path))[0]
        k = 0
        while name in used:
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        names.append(name)
    return names


def check_output_folder(output_dir, paths, names, overwrite=False):
    """Refuse an output folder where a file the demo writes would replace an input, or, unless ``overwrite``,
    any file."""
    inputs = {os.path.realpath(p) for p in paths}
    targets = [os.path.join(output_dir, n) for n in [f"{name}.png" for name in names] + RESULT_FILES]
    clash = next((t for t in targets if os.path.realpath(t) in inputs), None)
    if clash:
        raise ConfigError(f"--output {output_dir!r} would overwrite the input image {clash}; choose another folder")
    existing = [os.path.basename(t) for t in targets if os.path.lexists(t)]
    if existing and not overwrite:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise ConfigError(f"--output {output_dir!r} already holds {', '.join(existing[:3])}{more}, which this run "
                          "would write: pass --overwrite to replace them, or choose another folder")


def display_metadata(cfg, num_classes):
    """(Visualizer metadata, contiguous index -> output category id, id -> name) from DATASETS.TEST[0]."""
    from detectron2.data import MetadataCatalog
    from detectron2.data.catalog import Metadata

    source = MetadataCatalog.get(cfg.DATASETS.TEST[0]) if len(cfg.DATASETS.TEST) else Metadata()
    metadata, names = Metadata(), source.get("thing_classes", None)
    if names is not None and len(names) != num_classes:
        logger.warning(f"{cfg.DATASETS.TEST[0]} has {len(names)} classes but the model predicts {num_classes}; "
                       "labelling detections with class indices")
        names = None
    if names is not None:
        metadata.set(thing_classes=list(names))
    id_map = source.get("thing_dataset_id_to_contiguous_id", None) if names is not None else None
    to_output = {c: d for d, c in id_map.items()} if id_map else {i: i for i in range(num_classes)}
    return metadata, to_output, {to_output[i]: (names[i] if names else str(i)) for i in range(num_classes)}


def to_coco(instances, image_id, to_output):
    if len(instances) == 0:
        return []
    from detectron2.structures import BoxMode  # after parsing, as every Detectron2 import of a command

    boxes = BoxMode.convert(instances.pred_boxes.tensor.numpy(), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)  # COCO's boxes
    return [{
        "image_id": image_id, "category_id": int(to_output[int(c)]), "bbox": [float(v) for v in box], "score": float(s)
    } for box, c, s in zip(boxes, instances.pred_classes.tolist(), instances.scores.tolist())]


def _write_results(output_dir, cfg, categories, processed, skipped, detections, complete):
    atomic_write(os.path.join(output_dir, "detections.json"), lambda f: json.dump(detections, f, indent=1), mode="w")
    summary = {
        "complete": complete,
        "config": {
            "weights": cfg.MODEL.WEIGHTS, "device": cfg.MODEL.DEVICE,
            "score_thresh_test": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST, "min_size_test": cfg.INPUT.MIN_SIZE_TEST
        },
        "categories": [{"id": i, "name": n} for i, n in categories.items()],
        "processed": processed,
        "skipped": skipped,
    }
    atomic_write(os.path.join(output_dir, "summary.json"), lambda f: json.dump(summary, f, indent=1), mode="w")


def _main(argv):
    args = get_parser().parse_args(argv)
    from detectron2.utils.logger import setup_logger

    from ..config import num_classes as class_count
    from ..data.images import read_image
    from ..engine.defaults import load_cfg
    from ..engine.predictor import RGSPredictor
    from ..utils.drawing import draw_detections

    setup_logger(name="detectron2")
    setup_logger(name="rgs_detectron")
    cfg = load_cfg(args, weights=args.weights, freeze=False)
    # The score cut-off lives on a different key per meta-architecture.
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.confidence_threshold
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = args.confidence_threshold
    cfg.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = args.confidence_threshold
    cfg.freeze()

    paths, problems = collect_inputs(args.input)
    names = output_names(paths)
    check_output_folder(args.output, paths, names, args.overwrite)
    predictor = RGSPredictor(cfg, compile=args.compile)
    metadata, to_output, categories = display_metadata(cfg, class_count(cfg)[1])
    os.makedirs(args.output, exist_ok=True)

    processed, detections = [], []
    skipped = [{"input": spec, "reason": reason} for spec, reason in problems]
    for s in skipped:
        tqdm.write(f"skipped {s['input']}: {s['reason']}", file=sys.stderr)
    complete = False
    logger.info(f"{len(paths)} image file(s) to process on {cfg.MODEL.DEVICE}")
    try:
        for path, name in tqdm(list(zip(paths, names)), desc="detect", unit="img", disable=args.no_progress):
            try:
                image = read_image(path, format="BGR")
                instances = predictor(image)["instances"].to("cpu")
                drawn = draw_detections(image, instances, metadata)
            except (UserError, RuntimeError, ValueError, AssertionError, IndexError) as e:
                reason = first_line(e)
                if not isinstance(e, UserError):
                    reason = f"the model cannot process it ({type(e).__name__}: {reason})"
                tqdm.write(f"skipped {path}: {reason}", file=sys.stderr)
                skipped.append({"input": path, "reason": reason})
                continue
            png = os.path.join(args.output, name + ".png")
            atomic_write(png, lambda f, d=drawn: Image.fromarray(np.ascontiguousarray(d)).save(f, format="PNG"))
            found = to_coco(instances, name, to_output)
            detections += found
            processed.append({
                "image_id": name, "file_name": path, "visualization": png, "height": int(image.shape[0]),
                "width": int(image.shape[1]), "num_detections": len(found)
            })
        complete = True
    finally:
        _write_results(args.output, cfg, categories, processed, skipped, detections, complete)
    print(f"Processed {len(processed)} image(s) ({len(detections)} detections), skipped {len(skipped)}; "
          f"results in {args.output}")
    return 0 if processed else 1


def main(argv=None):
    return run_tool(_main, argv, "demo")


if __name__ == "__main__":
    sys.exit(main())
