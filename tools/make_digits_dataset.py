#!/usr/bin/env python
"""Generate the built-in digits detection dataset (COCO-JSON and VOC layouts).

    python tools/make_digits_dataset.py                 # -> $DETECTRON2_DATASETS/rgs_digits
    python tools/make_digits_dataset.py --num-train 600 --seed 1 --overwrite
"""
import argparse

from rgs_detectron.data import generate_digits_dataset
from rgs_detectron.data.builtin import digits_root


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="output folder (default: $DETECTRON2_DATASETS/rgs_digits)")
    p.add_argument("--num-train", type=int, default=300)
    p.add_argument("--num-val", type=int, default=100)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="regenerate even if a complete dataset exists")
    a = p.parse_args(argv)
    root = generate_digits_dataset(
        a.root or digits_root(), num_train=a.num_train, num_val=a.num_val,
        image_size=a.image_size, seed=a.seed, overwrite=a.overwrite,
    )
    print(f"digits dataset ready at {root}")


if __name__ == "__main__":
    main()
