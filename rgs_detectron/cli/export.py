"""Export a trained detector as TorchScript and/or ONNX (or its backbone as a torch.export
program), verified against eager PyTorch.

    python -m rgs_detectron.cli.export --config-file configs/coco_res_rgs_50_fpn.yaml \\
        --weights output/model_final.pth --output exported \\
        [--format torchscript onnx pt2-backbone] [--sample-image img.jpg] [--device cpu] [--overwrite] \\
        [KEY VALUE ...]

Writes ``model.ts`` / ``model.onnx`` (the detector) / ``backbone.pt2`` (its backbone only)
into the ``--output`` folder only after each has reproduced the eager model on the sample
image and on a second image size (see ``rgs_detectron/export.py`` and docs/USAGE.md). An
existing export is replaced only with ``--overwrite``. Exit status: 0 all exports verified and written, 1 an input or a
verification failed (that file is not written), 2 usage error.
"""
import argparse
import sys

from ..utils.commandline import add_config_args, output_folder, run_tool


def get_parser():
    from ..export import DETECTOR_FORMATS, FORMATS  # the formats' names: export.py is their one place

    p = argparse.ArgumentParser(prog="export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="checkpoint to export (overrides MODEL.WEIGHTS)")
    p.add_argument("--output", required=True, type=output_folder,
                   help="folder for model.ts / model.onnx / backbone.pt2")
    p.add_argument(
        "--format", nargs="+", choices=FORMATS, default=list(DETECTOR_FORMATS),
        help="torchscript and onnx hold the detector, pt2-backbone (torch.export) only its backbone "
        "(default: %(default)s)")
    p.add_argument("--sample-image", default=None, help="image to trace and verify on (default: a synthetic one)")
    p.add_argument("--overwrite", action="store_true", help="replace existing exports in --output")
    return add_config_args(p)


def _main(argv):
    args = get_parser().parse_args(argv)
    from detectron2.utils.logger import setup_logger

    from ..engine.defaults import load_cfg
    from ..export import TOLERANCES, build_export_model, export_model, sample_images

    setup_logger(name="detectron2")
    setup_logger(name="rgs_detectron")
    cfg = load_cfg(args, weights=args.weights)
    model = build_export_model(cfg)
    images = sample_images(cfg, args.sample_image)
    for r in export_model(model, images, args.output, args.format, overwrite=args.overwrite):
        checks = "; ".join(
            f"{c['image_size'][0]}x{c['image_size'][1]}: " +
            (f"{c['detections']} detections" if "detections" in c else f"{len(c['max_abs_diff'])} feature maps") +
            f", max |diff| {max(c['max_abs_diff'].values(), default=0.0):.2g}" for c in r.checks)
        print(f"{r.format}: {r.path} verified against eager (tolerance {TOLERANCES[r.format]:g}) - {checks}")
    return 0


def main(argv=None):
    return run_tool(_main, argv, "export")


if __name__ == "__main__":
    sys.exit(main())
