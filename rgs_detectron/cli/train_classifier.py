"""Pretrain an RGSNet classifier (torchvision layout): the weights the detection configs start from.

    # the imagenet recipe (the paper's Sec. 4.1 schedule, ours where it is silent: docs/ARCHITECTURE.md) on 8 GPUs,
    # one machine, then on 2 machines x 8 GPUs
    torchrun --nproc_per_node 8 -m rgs_detectron.cli.train_classifier --dataset imagenet \\
        --data-root /data/imagenet --recipe imagenet --variant Res-RGS --depth 50 --amp --channels-last \\
        --output output/imagenet_res_rgs_50
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 --nproc_per_node 8 \\
        -m rgs_detectron.cli.train_classifier ... (same options)

    # the cifar recipe (the paper's Sec. 4.2), shortened, on Fashion-MNIST (Debian's dataset-fashion-mnist), one CPU
    python -m rgs_detectron.cli.train_classifier --dataset fashion_mnist --data-root datasets \\
        --recipe cifar --epochs 16 --variant b-RGS --depth 26 --width-mult 0.25 --output output/fm_b_rgs

    # a warm start from torchvision's ResNet-50 (NOT the paper's protocol; labelled as such)
    ... --variant b-RGS --warm-start torchvision:ResNet50_Weights.IMAGENET1K_V1 --recipe imagenet --epochs 10

Then ``python -m rgs_detectron.cli.convert OUTPUT/model_final.pth OUT.pth`` (the checkpoint
records its architecture). ``--batch-size`` is the global batch over all processes; the
learning rate scales linearly with it. ``--stem small`` (3x3 conv, no max-pool) suits
28-32 pixel images but cannot be converted for detection. Kill it at any moment and rerun
with ``--resume`` and the same options (a resume that differs from the run is refused,
naming each option); a run or finished model in ``--output`` is replaced only with
``--overwrite``, which moves it into ``previous_run_<time>/`` there first. Exit status: 0
done, 1 failed (data, weights, disk), 2 usage error.
"""
import argparse
import sys

from ..errors import ConfigError
from ..utils.commandline import non_negative_int, positive_float, positive_int, run_tool


def get_parser():
    # The choices come from their registries (datasets, recipes, the spec's options).
    from ..classification.datasets import DATASETS
    from ..classification.recipes import RECIPES
    from ..engine.defaults import add_spec_args

    p = argparse.ArgumentParser(prog="train_classifier", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--dataset", required=True, choices=[name for name, _ in DATASETS],
                   help=". ".join(f"{name}: {' '.join(fn.__doc__.split()).rstrip('.')}" for name, fn in DATASETS))
    d.add_argument("--data-root", help="dataset folder (imagenet: with train/ and val/; not needed for digits)")
    d.add_argument("--download", action="store_true", help="let torchvision download CIFAR or Fashion-MNIST")
    d.add_argument("--image-size", type=positive_int, help="input size (imagenet 224; small datasets 32)")
    d.add_argument("--limit-train", type=positive_int, help="train on a fixed random subset of this many images")
    d.add_argument("--limit-val", type=positive_int, help="evaluate on a fixed random subset of this many images")
    add_spec_args(p).add_argument(
        "--warm-start", metavar="RESNET.pth", help="initialise from a plain ResNet's "
        "weights, a file or torchvision:ENUM.VALUE (not the paper's protocol; labelled in the outputs)")
    t = p.add_argument_group("training")
    t.add_argument("--recipe", choices=RECIPES, default="imagenet")
    t.add_argument("--epochs", type=positive_int, help="shorten or lengthen the recipe (milestones scale along)")
    t.add_argument("--batch-size", type=positive_int, help="global batch (learning rate scales linearly)")
    t.add_argument("--lr", type=positive_float, help="learning rate, instead of the recipe's scaled one")
    t.add_argument("--device", default="auto", help="cpu, cuda or auto")
    t.add_argument("--amp", action="store_true", help="mixed precision (float16 on CUDA, bfloat16 on the CPU)")
    t.add_argument("--channels-last", action="store_true")
    t.add_argument("--workers", type=non_negative_int, default=2, help="data loading processes per training process")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--output", required=True, help="folder for checkpoints, metrics and logs")
    again = t.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in --output (its options must agree)")
    again.add_argument("--overwrite", action="store_true",
                       help="start anew over the run in --output (moved into previous_run_<time>/ there)")
    t.add_argument("--no-progress", action="store_true")
    return p


def _main(argv):
    args = get_parser().parse_args(argv)
    from detectron2.utils.logger import setup_logger

    from ..classification.datasets import build_datasets
    from ..classification.pretrain import PretrainOptions, pretrain
    from ..classification.recipes import RECIPES
    from ..engine.defaults import spec_from_args

    setup_logger(name="rgs_detectron", abbrev_name="rgs")  # the console; the run adds OUTPUT/log.txt
    spec = spec_from_args(args)
    if spec.stem == "small" and args.dataset == "imagenet":
        raise ConfigError("--stem small is for 28-32 pixel images; ImageNet models use --stem imagenet")
    recipe = RECIPES[args.recipe].scaled(args.epochs, args.batch_size, args.lr)  # argparse checked the name
    train, val, num_classes, image_size = build_datasets(args.dataset, args.data_root, args.image_size,
                                                         download=args.download, limit_train=args.limit_train,
                                                         limit_val=args.limit_val, seed=args.seed)
    description = (f"{args.dataset} at {image_size}x{image_size} ({len(train)} train / {len(val)} eval images), "
                   f"{recipe.describe()}, seed {args.seed}")
    # What a --resume must repeat: the options that decide what the run computes (not where or how fast).
    settings = {
        "--dataset": args.dataset, "--image-size": image_size, "--limit-train (training images)": len(train),
        "--limit-val (evaluation images)": len(val), "--seed": args.seed, "--recipe": recipe.name,
        "--epochs": recipe.epochs, "--batch-size": recipe.batch_size, "--lr": recipe.lr, "--warm-start": args.warm_start
    }
    options = PretrainOptions(output=args.output, recipe=recipe, device=args.device, amp=args.amp,
                              channels_last=args.channels_last, workers=args.workers, seed=args.seed,
                              resume=args.resume, overwrite=args.overwrite, warm_start=args.warm_start,
                              progress=not args.no_progress, description=description, settings=settings)
    final = pretrain(spec, train, val, num_classes, options)
    print(f"{spec.variant}-{spec.depth} ({args.width_mult or 1:g}x): eval top-1 "
          f"{final.get('val_top1', float('nan')):.2f}% (error {100 - final.get('val_top1', float('nan')):.2f}%), "
          f"top-5 {final.get('val_top5', float('nan')):.2f}%; {args.output}/model_final.pth")
    return 0


def main(argv=None):
    return run_tool(_main, argv, "train_classifier")


if __name__ == "__main__":
    sys.exit(main())
