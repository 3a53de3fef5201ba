#!/usr/bin/env python
"""Write COCO 2014 ``instances_minival2014.json`` and ``instances_valminusminival2014.json``.

    python tools/make_coco_minival.py --val2014 datasets/coco/annotations/instances_val2014.json \\
        [--val2017 datasets/coco/annotations/instances_val2017.json] [--overwrite]

With val2017 given, minival2014 is exactly val2017's image set (the canonical split);
without it, a documented deterministic split (see rgs_detectron/data/coco_minival.py).
"""
import argparse
import os
import sys

from rgs_detectron.data.coco_minival import write_minival_split


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--val2014", required=True, help="path to instances_val2014.json")
    p.add_argument("--val2017", help="path to instances_val2017.json (gives the canonical split)")
    p.add_argument("--output-dir", help="where to write the two files (default: next to --val2014)")
    p.add_argument("--size", type=int, default=5000, help="minival size for the deterministic split")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    a = p.parse_args(argv)
    try:
        summary = write_minival_split(
            a.val2014, val2017_json=a.val2017, output_dir=a.output_dir or os.path.dirname(os.path.abspath(a.val2014)),
            size=a.size, overwrite=a.overwrite,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"make_coco_minival: error: {e}", file=sys.stderr)
        return 1
    for k, v in summary.items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
