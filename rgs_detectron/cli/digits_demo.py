"""The README's main job: train and evaluate a Res-RGS Faster R-CNN on the built-in digits.

    python -m rgs_detectron.cli.digits_demo                                   # -> output/digits_demo
    python -m rgs_detectron.cli.digits_demo --output output/b_rgs MODEL.RGSNET.VARIANT b-RGS SEED 1

Generates the dataset if needed, runs ``train_net`` (in its own process) with
``configs/demo/digits_res_rgs.yaml`` and the trailing KEY VALUE overrides, on the GPU when one
is usable and on the CPU otherwise (said in the output), and evaluates with Detectron2's COCO
evaluator. The output folder gets the log with the AP table, metrics.json, TensorBoard events,
curves.png (losses and AP), predictions/*.png and result.json. Several variants and seeds, with
mean and spread, are the study's job: ``tools/pretrain_study.py`` (README, "Results"). Exit
status: 0 done, 1 the run failed, 2 usage error.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from ..errors import InputError
from ..utils.commandline import run_tool
from ..utils.fileio import atomic_write


def train_and_evaluate(config_file, opts, output_dir):
    """Run train_net in a fresh process; return (seconds, final evaluation row of metrics.json)."""
    from ..utils.plots import read_metrics

    cmd = [
        sys.executable, "-m", "rgs_detectron.cli.train_net", "--config-file", config_file, "--overwrite",
        *map(str, opts), "OUTPUT_DIR", output_dir
    ]
    start = time.perf_counter()
    rc = subprocess.call(cmd)
    seconds = time.perf_counter() - start
    if rc:
        log = os.path.join(output_dir, "log.txt")
        raise InputError(f"training failed (exit status {rc}): " +
                         (f"see {log}" if os.path.isfile(log) else "train_net's message is above"))
    rows = [r for r in read_metrics(os.path.join(output_dir, "metrics.json")) if "bbox/AP" in r]
    if not rows:
        raise InputError(f"{output_dir}/metrics.json has no evaluation; set TEST.EVAL_PERIOD or check the log")
    return seconds, rows[-1]


def draw_predictions(cfg, out_dir, num_images=4, score_threshold=0.5):
    """The trained model's detections on the first validation images, as PNGs."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from ..data.images import read_image
    from ..engine.predictor import RGSPredictor
    from ..utils.drawing import draw_detections

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
    predictor = RGSPredictor(cfg)
    metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for record in DatasetCatalog.get(cfg.DATASETS.TEST[0])[:num_images]:
        image = read_image(record["file_name"], format="BGR")  # RGSPredictor takes BGR, like DefaultPredictor
        instances = predictor(image)["instances"].to("cpu")
        big = np.asarray(Image.fromarray(image[:, :, ::-1]).resize((image.shape[1] * 3, image.shape[0] * 3)))
        instances.pred_boxes.scale(3.0, 3.0)
        drawn = draw_detections(np.ascontiguousarray(big[:, :, ::-1]), instances, metadata)
        path = os.path.join(out_dir, os.path.splitext(os.path.basename(record["file_name"]))[0] + "_pred.png")
        atomic_write(path, lambda f, d=drawn: Image.fromarray(d).save(f, format="PNG"))
        written.append(path)
    return written


def run_one(args, device):
    from ..config import get_rgsnet_cfg
    from ..utils.plots import plot_metrics

    opts, out = [*args.opts, "MODEL.DEVICE", device], args.output
    seconds, final = train_and_evaluate(args.config_file, opts, out)
    cfg = get_rgsnet_cfg(args.config_file, opts)
    cfg.MODEL.WEIGHTS = os.path.join(out, "model_final.pth")
    record = {
        "variant": cfg.MODEL.RGSNET.VARIANT, "seed": cfg.SEED, "device": device,
        "train_and_eval_seconds": round(seconds, 1), "AP": final["bbox/AP"], "AP50": final["bbox/AP50"],
        "AP75": final["bbox/AP75"], "output_dir": out, "curves": plot_metrics(os.path.join(out, "metrics.json"),
                                                                              os.path.join(out, "curves.png")),
        "predictions": draw_predictions(cfg, os.path.join(out, "predictions"))
    }
    atomic_write(os.path.join(out, "result.json"), lambda f: json.dump(record, f, indent=2), mode="w")
    print(
        f"[digits demo] {record['variant']} seed {record['seed']}: AP {record['AP']:.2f}  AP50 {record['AP50']:.2f} "
        f"in {seconds:.0f} s on {device}; see {out}", flush=True)
    return record


def _main(argv):
    p = argparse.ArgumentParser(prog="digits_demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", help="default: the shipped configs/demo/digits_res_rgs.yaml")
    p.add_argument(
        "--device", help="cpu, cuda, cuda:N or auto (the GPU when usable, else the CPU); default: "
        "MODEL.DEVICE among the overrides, else auto")
    p.add_argument("--output", default="output/digits_demo", help="folder for the run")
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    args = p.parse_args(argv)
    from ..config import resolve_device
    from ..data.builtin import digits_root
    from ..data.digits import generate_digits_dataset
    from ..engine.defaults import requested_device
    from ..model_zoo import get_config_file

    args.config_file = args.config_file or get_config_file("demo/digits_res_rgs.yaml")
    request = requested_device(args.device, args.opts)
    device = resolve_device(request)
    if request == "auto" and device == "cpu":
        print("[digits demo] no usable GPU: training on the CPU", flush=True)
    generate_digits_dataset(digits_root())
    run_one(args, device)
    return 0


def main(argv=None):
    return run_tool(_main, argv, "digits_demo")


if __name__ == "__main__":
    sys.exit(main())
