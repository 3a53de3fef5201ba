#!/usr/bin/env python
"""Export a trained detector as TorchScript and/or ONNX, verified against eager PyTorch.

    python tools/export_model.py --config-file configs/coco_res_rgs_50_fpn.yaml \\
        --weights output/model_final.pth --output exported \\
        [--format torchscript onnx] [--sample-image img.jpg] [--device cpu] [--opts KEY VALUE ...]

Writes ``model.ts`` / ``model.onnx`` into ``--output`` only after each has reproduced the
eager model on the sample image and on a second image size (see rgs_detectron/export.py,
docs/USAGE.md). Exit status: 0 all exports verified, 1 a verification failed (that file is
not written), 2 bad command line, config or weights.
"""
import argparse
import sys

from detectron2.config import get_cfg
from detectron2.utils.logger import setup_logger

from rgs_detectron import add_rgsnet_config
from rgs_detectron.demo import resolve_device
from rgs_detectron.export import (
    FORMATS,
    ONNX_ATOL,
    TORCHSCRIPT_ATOL,
    ExportVerificationError,
    build_export_model,
    export_model,
    sample_images,
)


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--weights", default=None, help="checkpoint to export (overrides MODEL.WEIGHTS)")
    parser.add_argument("--output", required=True, help="folder for model.ts / model.onnx")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument(
        "--sample-image", default=None, help="image to trace and verify on (default: a synthetic one)"
    )
    parser.add_argument("--device", default="cpu", help='"cpu" (default), "cuda", "cuda:N"')
    parser.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides, last on the line")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="detectron2")
    setup_logger(name="rgs_detectron")
    try:
        cfg = get_cfg()
        add_rgsnet_config(cfg)
        cfg.merge_from_file(args.config_file)
        cfg.merge_from_list(args.opts)
        if args.weights:
            cfg.MODEL.WEIGHTS = args.weights
        cfg.MODEL.DEVICE = resolve_device(args.device)
        cfg.freeze()
        model = build_export_model(cfg)
        images = sample_images(cfg, args.sample_image)
    except (OSError, ValueError, KeyError, AssertionError) as e:
        print(f"export: {type(e).__name__}: {e}", file=sys.stderr)
        return 2

    try:
        results = export_model(model, images, args.output, args.format)
    except ExportVerificationError as e:
        print(f"export FAILED verification, nothing written for that format: {e}", file=sys.stderr)
        return 1
    for r in results:
        atol = TORCHSCRIPT_ATOL if r.format == "torchscript" else ONNX_ATOL
        checks = "; ".join(
            f"{c['image_size'][0]}x{c['image_size'][1]}: {c['detections']} detections, "
            f"max |diff| {max(c['max_abs_diff'].values(), default=0.0):.2g}"
            for c in r.checks
        )
        print(f"{r.format}: {r.path} verified against eager (tolerance {atol:g}) - {checks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
