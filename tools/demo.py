#!/usr/bin/env python
"""Detect objects in your own images with a trained RGSNet detector.

    python tools/demo.py --config-file configs/coco_res_rgs_50_fpn.yaml \\
        --weights output/model_final.pth --input photos/ extra/*.jpg one.png \\
        --output demo_out [--confidence-threshold 0.5] [--device cpu|cuda|auto] \\
        [--opts KEY VALUE ...]

Writes one ``<name>.png`` per image, ``detections.json`` (COCO results format) and
``summary.json`` into ``--output`` (see ``rgs_detectron/demo.py`` and docs/USAGE.md).
Unreadable or missing inputs are reported and skipped. Exit status: 0 if at least one
image was processed, 1 if none could be, 2 for a bad command line, config or weights.
"""
import argparse
import sys

from tqdm import tqdm

from detectron2.utils.logger import setup_logger

from rgs_detectron.demo import DemoRunner, collect_inputs, setup_cfg


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="detector config (yaml)")
    parser.add_argument("--weights", default=None, help="checkpoint to load (overrides MODEL.WEIGHTS)")
    parser.add_argument(
        "--input", nargs="+", required=True, help="image files, folders and/or glob patterns (quote globs)"
    )
    parser.add_argument("--output", required=True, help="folder for the drawn images and the JSON files")
    parser.add_argument(
        "--confidence-threshold", type=float, default=0.5, help="minimum score of a detection to keep (0.5)"
    )
    parser.add_argument(
        "--device", default="auto", help='"cpu", "cuda", "cuda:N" or "auto" (a GPU if one is visible)'
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs, last on the line"
    )
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="detectron2")
    logger = setup_logger(name="rgs_detectron")
    try:
        cfg = setup_cfg(
            args.config_file,
            args.opts,
            weights=args.weights,
            confidence_threshold=args.confidence_threshold,
            device=args.device,
        )
        runner = DemoRunner(cfg)
    except (OSError, ImportError, ValueError, KeyError, AssertionError) as e:
        print(f"demo: {type(e).__name__}: {e}", file=sys.stderr)
        return 2

    paths, problems = collect_inputs(args.input)
    logger.info(f"{len(paths)} image file(s) to process on {cfg.MODEL.DEVICE}")
    summary = runner.run(
        paths,
        args.output,
        problems=problems,
        progress=not args.no_progress,
        log=lambda msg: tqdm.write(msg, file=sys.stderr),
    )
    print(summary.message())
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
