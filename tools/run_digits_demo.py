#!/usr/bin/env python
"""The README's main job: train and evaluate a Res-RGS Faster R-CNN on the built-in digits.

    python tools/run_digits_demo.py                         # Res-RGS, seed 0, output/digits_demo
    python tools/run_digits_demo.py --variants original b-RGS Res-RGS --seeds 0 1 2

Generates the dataset if needed, trains from scratch with configs/demo/digits_res_rgs.yaml
(on the GPU when there is one), evaluates with Detectron2's COCO evaluator, and leaves in
each run folder: the log with the AP table, metrics.json, TensorBoard events,
curves.png (losses and AP) and predictions/*.png. With several variants or seeds it
also writes summary.json and summary.md (mean and spread of AP per variant).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

from detectron2.config import get_cfg
from detectron2.engine import default_setup

from rgs_detectron import add_rgsnet_config
from rgs_detectron.data import generate_digits_dataset
from rgs_detectron.data.builtin import digits_root
from rgs_detectron.engine import RGSTrainer, check_inputs
from rgs_detectron.reporting import draw_predictions, plot_metrics

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "demo", "digits_res_rgs.yaml")


def run_one(args, variant, seed, output_dir):
    cfg = get_cfg()
    add_rgsnet_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(["MODEL.RGSNET.VARIANT", variant, "SEED", seed, "OUTPUT_DIR", output_dir])
    cfg.merge_from_list(args.opts)
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    cfg.freeze()
    default_setup(cfg, argparse.Namespace(config_file=args.config_file, eval_only=False, opts=args.opts))
    check_inputs(cfg)
    start = time.perf_counter()
    trainer = RGSTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    seconds = time.perf_counter() - start
    results = trainer._last_eval_results or RGSTrainer.test(cfg, trainer.model)
    bbox = results["bbox"]
    final_cfg = cfg.clone()
    final_cfg.defrost()
    final_cfg.MODEL.WEIGHTS = os.path.join(output_dir, "model_final.pth")
    curves = plot_metrics(os.path.join(output_dir, "metrics.json"), os.path.join(output_dir, "curves.png"))
    pictures = draw_predictions(final_cfg, cfg.DATASETS.TEST[0], os.path.join(output_dir, "predictions"))
    record = {
        "variant": variant, "seed": seed, "device": cfg.MODEL.DEVICE, "train_and_eval_seconds": round(seconds, 1),
        "AP": bbox["AP"], "AP50": bbox["AP50"], "AP75": bbox["AP75"],
        "output_dir": output_dir, "curves": curves, "predictions": pictures,
    }
    with open(os.path.join(output_dir, "result.json"), "w") as f:
        json.dump(record, f, indent=2)
    print(f"[digits demo] {variant} seed {seed}: AP {bbox['AP']:.2f}  AP50 {bbox['AP50']:.2f} "
          f"in {seconds:.0f} s on {cfg.MODEL.DEVICE}; see {output_dir}")
    return record


def summarize(records, out_dir):
    by_variant = {}
    for r in records:
        by_variant.setdefault(r["variant"], []).append(r)
    lines = [
        "| variant | seeds | AP (mean ± std) | AP50 (mean ± std) | train+eval s (median) |",
        "|---|---|---|---|---|",
    ]
    summary = {}
    for variant, rs in by_variant.items():
        def ms(key):
            vals = [r[key] for r in rs]
            return statistics.mean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)

        ap, ap50 = ms("AP"), ms("AP50")
        secs = statistics.median(r["train_and_eval_seconds"] for r in rs)
        summary[variant] = {"seeds": [r["seed"] for r in rs], "AP": ap, "AP50": ap50, "median_seconds": secs}
        lines.append(
            f"| {variant} | {len(rs)} | {ap[0]:.1f} ± {ap[1]:.1f} | {ap50[0]:.1f} ± {ap50[1]:.1f} | {secs:.0f} |"
        )
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump({"runs": records, "by_variant": summary}, f, indent=2)
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=CONFIG)
    p.add_argument("--variants", nargs="+", default=["Res-RGS"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--output-dir", default="output/digits_demo")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = p.parse_args(argv)

    generate_digits_dataset(digits_root())
    single = len(args.variants) == 1 and len(args.seeds) == 1
    records = []
    for variant in args.variants:
        for seed in args.seeds:
            out = args.output_dir if single else os.path.join(args.output_dir, f"{variant}_seed{seed}")
            records.append(run_one(args, variant, seed, out))
    if not single:
        summarize(records, args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
