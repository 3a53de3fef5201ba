"""The warm start at ResNet-50's depth: does a detector warm-started from a plain ResNet diverge?

    python tools/warm_start_depth50.py --output output/warm_start_depth50      # 0.25x width, ~30 min on 1 CPU

No ImageNet ResNet-50 can be fetched here, so the source is a stand-in: a random ResNet-50
(``RGSNetClassifier`` "original", torchvision layout, seed 0) whose every BatchNorm holds the
statistics of its own input, measured through the network on 64 digits images, as training
leaves them. From it, ``original`` (plain conversion) and b-RGS, Res-RGS and Res-RGS with
``rg_init`` zero (``convert --warm-start-from-resnet``); each detector (the digits config at
depth 50, 128 pixels) runs its first ``--iterations`` iterations (``tools/first_iterations.py``)
with FrozenBN and ``FREEZE_AT 2``, the norm the COCO/VOC configs fine-tune with, and with
trainable BN and ``FREEZE_AT 0``, the study's. Each RGS warm start also runs with FrozenBN after
one epoch of classifier training (``train_classifier --warm-start``, scikit-learn's digits at
128 pixels, learning rate 0.01), which lets BatchNorm learn the variant's statistics. Writes
``results.json`` (every loss) and ``summary.md``; one run at a time, one CPU thread. A developer
tool (not installed).
"""
import argparse
import glob
import json
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image

from rgs_detectron.classification import RGSNetClassifier
from rgs_detectron.classification.datasets import IMAGENET_MEAN, IMAGENET_STD
from rgs_detectron.data.builtin import digits_root
from rgs_detectron.data.digits import generate_digits_dataset
from rgs_detectron.model_zoo import get_config_file
from rgs_detectron.modeling import RGSNetSpec
from rgs_detectron.utils.commandline import run_tool
from rgs_detectron.utils.fileio import atomic_write

from pretrain_study import ENV, PY, TOOLS, _convert

STARTS = (("original", "paper"), ("b-RGS", "paper"), ("Res-RGS", "paper"), ("Res-RGS", "zero"))
NORMS = {
    "FrozenBN": ["MODEL.RESNETS.NORM", "FrozenBN", "MODEL.BACKBONE.FREEZE_AT", "2"],
    "BN": ["MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", "0"]
}
SHOWN = (0, 1, 2, 4, 7)


def stand_in(path, width, images=64, size=128):
    """A random ResNet-50 whose BatchNorms hold the statistics of their inputs on digits images."""
    torch.manual_seed(0)
    model = RGSNetClassifier(RGSNetSpec.create("original", 50, width), num_classes=10)
    files = sorted(glob.glob(os.path.join(digits_root(), "JPEGImages", "train_*.jpg")))[:images]
    mean, std = (torch.tensor(v)[:, None, None] for v in (IMAGENET_MEAN, IMAGENET_STD))
    x = torch.stack([(torch.from_numpy(np.array(Image.open(f).convert("RGB").resize(
        (size, size)))).permute(2, 0, 1).float() / 255 - mean) / std for f in files])
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # the cumulative average over every batch
    model.train()
    with torch.no_grad():
        for batch in x.split(16):
            model(batch)
    torch.save(model.state_dict(), path)


def _call(cmd, log):
    with open(log, "a") as f:
        return subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=ENV) == 0


def _first(args, name, weights, variant, init, norm):
    """Every loss of the detector's first iterations from ``weights`` (None: the run failed)."""
    out = os.path.join(args.output, f"{name}_{norm}.json")
    if not os.path.isfile(out) and not _call([
            PY,
            os.path.join(TOOLS, "first_iterations.py"), "--iterations",
            str(args.iterations), "--output", out, "--config-file",
            get_config_file("demo/digits_res_rgs.yaml"), "MODEL.RGSNET.VARIANT", variant, "MODEL.RGSNET.RG_INIT", init,
            "MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.STEM_OUT_CHANNELS",
            str(int(64 * args.width_mult)), "MODEL.RESNETS.RES2_OUT_CHANNELS",
            str(int(256 * args.width_mult)), "MODEL.RESNETS.WIDTH_PER_GROUP",
            str(int(64 * args.width_mult)), "MODEL.RGSNET.GN_GROUPS",
            str(RGSNetSpec.create(variant, 50, args.width_mult).gn_groups), "SEED", "0", "MODEL.DEVICE", "cpu",
            "DATALOADER.NUM_WORKERS", "0", "MODEL.WEIGHTS", weights, *NORMS[norm]
    ], os.path.join(args.output, "job.log")):
        return None
    result = json.loads(open(out).read())
    print(
        f"[depth50] {name} with {norm}: " + " ".join(f"{r['total_loss']:.3g}" for r in result["iterations"]) +
        (f", diverged at iteration {result['diverged_at']}" if result["diverged_at"] is not None else ""), flush=True)
    return result


def run(args):
    source = os.path.join(args.output, "stand_in.pth")
    if not os.path.isfile(source):
        stand_in(source, args.width_mult)
    log, results = os.path.join(args.output, "job.log"), {}
    target = ["--depth", "50", "--width-mult", str(args.width_mult)]
    for variant, init in STARTS:
        name = variant if init == "paper" else f"{variant}_rg-{init}"
        weights = os.path.join(args.output, f"{name}_warm.pth")
        warm = [] if variant == "original" else ["--warm-start-from-resnet"]
        if not _call(_convert(source, weights, "--variant", variant, "--rg-init", init, *target, *warm), log):
            return None
        row = results[f"{name} {'(plain conversion)' if not warm else 'warm start'}"] = {}
        for norm in NORMS:
            row[norm] = _first(args, f"{name}_warm", weights, variant, init, norm)
        if warm:
            tuned, tuned_weights = os.path.join(args.output,
                                                f"{name}_finetune"), os.path.join(args.output, f"{name}_finetune.pth")
            if not (_call([
                    PY, "-m", "rgs_detectron.cli.train_classifier", "--dataset", "digits", "--image-size", "128",
                    "--recipe", "cifar", "--epochs", "1", "--lr", "0.01", "--batch-size", "64", "--variant", variant,
                    "--rg-init", init, "--depth", "50", "--width-mult",
                    str(args.width_mult), "--warm-start", source, "--workers", "0", "--no-progress", "--device", "cpu",
                    "--resume", "--output", tuned
            ], log) and _call(_convert(os.path.join(tuned, "model_final.pth"), tuned_weights), log)):
                return None
            results[f"{name} warm start + 1 classifier epoch"] = {
                "FrozenBN": _first(args, f"{name}_finetune", tuned_weights, variant, init, "FrozenBN")
            }
    return results


def summarize(args, results):
    lines = [
        f"## The first {args.iterations} iterations of digits detectors at depth 50, {args.width_mult:g}x, from a "
        "calibrated stand-in ResNet-50: total loss", "",
        "| start | norm | " + " | ".join(f"iteration {i}" for i in SHOWN) + " | largest | diverged |",
        "|---|---|" + "---|" * (len(SHOWN) + 2)
    ]
    for start, row in results.items():
        for norm, run in row.items():
            if run is None:
                lines.append(f"| {start} | {norm} | run failed (see job.log) |")
                continue
            losses = [r["total_loss"] for r in run["iterations"]]
            lines.append(f"| {start} | {norm} | " +
                         " | ".join(f"{losses[i]:.3g}" if i < len(losses) else "–" for i in SHOWN) +
                         f" | {max(losses):.3g} | " +
                         ("no" if run["diverged_at"] is None else f"at iteration {run['diverged_at']}") + " |")
    atomic_write(os.path.join(args.output, "results.json"),
                 lambda f: json.dump({"settings": vars(args), "starts": results}, f, indent=1), mode="w")
    atomic_write(os.path.join(args.output, "summary.md"), lambda f: f.write("\n".join(lines) + "\n"), mode="w")
    print("\n".join(lines))


def _main(argv):
    p = argparse.ArgumentParser(prog="warm_start_depth50", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="output/warm_start_depth50")
    p.add_argument("--width-mult", type=float, default=0.25)
    p.add_argument("--iterations", type=int, default=8)
    args = p.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    generate_digits_dataset(digits_root())
    results = run(args)
    if results is None:
        print(f"[depth50] a run failed: see {args.output}/job.log", flush=True)
        return 1
    summarize(args, results)
    return 0


def main(argv=None):
    return run_tool(_main, argv, "warm_start_depth50")


if __name__ == "__main__":
    sys.exit(main())
