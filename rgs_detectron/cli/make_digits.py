"""Generate the built-in digits detection dataset (COCO-JSON and VOC layouts).

    python -m rgs_detectron.cli.make_digits                 # -> $DETECTRON2_DATASETS/rgs_digits
    python -m rgs_detectron.cli.make_digits --num-train 600 --seed 1 --overwrite

An existing dataset is kept when it agrees with every option given (its ``.complete``
marker records what it was made with); one made with other values is refused, naming
them, unless ``--overwrite``, which regenerates it (options not given: the defaults).
``--root`` must be a new or empty folder, or a digits dataset this tool wrote and nothing
else; anything else is refused untouched. Exit status: 0 ready, 1 refused, 2 usage error.
"""
import argparse
import sys

from ..data.digits import DEFAULTS, MIN_SCALE, generate_digits_dataset
from ..utils.commandline import run_tool


def _main(argv):
    p = argparse.ArgumentParser(prog="make_digits", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="output folder (default: $DETECTRON2_DATASETS/rgs_digits)")
    for name, help in (("num_train", "training images"), ("num_val", "validation images"),
                       ("image_size", "side of the square images"), ("max_objects", "digits per image, at most"),
                       ("min_scale", f"smallest digit height in pixels ({MIN_SCALE} or more)"),
                       ("max_scale", "largest digit height in pixels (at most --image-size)"), ("seed", "random seed")):
        p.add_argument("--" + name.replace("_", "-"), type=int, help=f"{help} (default {DEFAULTS[name]})")
    p.add_argument("--overwrite", action="store_true", help="regenerate a digits dataset this tool wrote")
    a = p.parse_args(argv)
    from ..data.builtin import digits_root

    params = {name: getattr(a, name) for name in DEFAULTS}
    root = generate_digits_dataset(a.root or digits_root(), overwrite=a.overwrite, **params)
    print(f"digits dataset ready at {root}")


def main(argv=None):
    return run_tool(_main, argv, "make_digits")


if __name__ == "__main__":
    sys.exit(main())
