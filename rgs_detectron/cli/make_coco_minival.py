"""Write COCO 2014 ``instances_minival2014.json`` and ``instances_valminusminival2014.json``.

    python -m rgs_detectron.cli.make_coco_minival --val2014 datasets/coco/annotations/instances_val2014.json \\
        [--val2017 datasets/coco/annotations/instances_val2017.json] [--overwrite]

With val2017 given, minival2014 is exactly val2017's image set (the canonical split);
without it, a documented deterministic split (see rgs_detectron/data/coco_minival.py).
"""
import argparse
import sys

from ..data.coco_minival import write_minival_split
from ..utils.commandline import run_tool


def _main(argv):
    p = argparse.ArgumentParser(prog="make_coco_minival", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--val2014", required=True, help="path to instances_val2014.json")
    p.add_argument("--val2017", help="path to instances_val2017.json (gives the canonical split)")
    p.add_argument("--output", help="folder to write the two files into (default: next to --val2014)")
    p.add_argument("--size", type=int, default=5000, help="minival size for the deterministic split")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    a = p.parse_args(argv)
    summary = write_minival_split(a.val2014, val2017_json=a.val2017, output_dir=a.output, size=a.size,
                                  overwrite=a.overwrite)
    for k, v in summary.items():
        print(f"{k}: {v}")
    return 0


def main(argv=None):
    return run_tool(_main, argv, "make_coco_minival")


if __name__ == "__main__":
    sys.exit(main())
