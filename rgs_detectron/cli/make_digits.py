"""Generate the built-in digits detection dataset (COCO-JSON and VOC layouts).

    python -m rgs_detectron.cli.make_digits                 # -> $DETECTRON2_DATASETS/rgs_digits
    python -m rgs_detectron.cli.make_digits --num-train 600 --seed 1 --overwrite

``--root`` must be a new or empty folder, or a digits dataset this tool wrote; anything
else is refused untouched. Exit status: 0 ready, 1 refused, 2 usage error.
"""
import argparse
import sys

from ..data.builtin import digits_root
from ..data.digits import generate_digits_dataset
from ..engine.defaults import run_tool


def _main(argv):
    p = argparse.ArgumentParser(prog="make_digits", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="output folder (default: $DETECTRON2_DATASETS/rgs_digits)")
    p.add_argument("--num-train", type=int, default=300)
    p.add_argument("--num-val", type=int, default=100)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="regenerate a complete digits dataset this tool wrote")
    a = p.parse_args(argv)
    root = generate_digits_dataset(
        a.root or digits_root(), num_train=a.num_train, num_val=a.num_val,
        image_size=a.image_size, seed=a.seed, overwrite=a.overwrite,
    )
    print(f"digits dataset ready at {root}")
    return 0


def main(argv=None):
    return run_tool(_main, argv, "make_digits")


if __name__ == "__main__":
    sys.exit(main())
