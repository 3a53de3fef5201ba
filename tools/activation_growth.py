"""Activation growth at initialisation: the std of each stage's output, for every variant.

    python tools/activation_growth.py [--depths 26 50 101]     # the tables of docs/ARCHITECTURE.md

Both networks as they initialise themselves (seed 0), in train mode (BN normalises with the
batch's statistics, as in the first steps of training), on 4 random N(0, 1) images of
224x224 (seed 0): the ImageNet classifier (``RGSNetClassifier``) and the Detectron2 backbone
(``RGSNet`` with trainable BN). A cell holds the std of the outputs of res2 / res3 / res4 /
res5 (the classifier's layer1..layer4). Rows with ``rg_init zero`` only where it applies
(Res-RGS). docs/ARCHITECTURE.md, "Activation growth", explains the numbers; a test
recomputes one cell of its tables. A developer tool (not installed); all rows take minutes.
"""
import argparse
import sys

import torch

from rgs_detectron.classification.classifier import RGSNetClassifier
from rgs_detectron.modeling import VARIANTS, RGSNet, RGSNetSpec
from rgs_detectron.utils.commandline import run_tool

DEPTHS = (26, 50, 101)
MODELS = {"classifier": "ImageNet classifier", "backbone": "Detectron2 backbone, trainable BN"}


def stage_stds(model, variant, depth, rg_init="paper"):
    """Std of res2..res5's outputs of ``model`` ("classifier" or "backbone") at initialisation."""
    torch.manual_seed(0)
    spec = RGSNetSpec.create(variant, depth, norm="BN", rg_init=rg_init)
    x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if model == "classifier":
            outputs = RGSNetClassifier(spec).train().forward_features(x)
        else:
            outputs = RGSNet(spec=spec, out_features=["res2", "res3", "res4", "res5"]).train()(x)
    return [t.std().item() for t in outputs.values()]


def res4_correlations(depth):
    """corr(x, GN(ReLU(x))) at each identity block of res4 (the classifier's layer3) of Res-RGS at ``depth``, as
    ``stage_stds`` initialises and feeds it: the ρ of docs/ARCHITECTURE.md's "Activation growth"."""
    torch.manual_seed(0)
    model = RGSNetClassifier(RGSNetSpec.create("Res-RGS", depth, norm="BN")).train()
    found = []

    def correlation(block, inputs, output):
        if block.keep_identity:
            x = inputs[0]
            g = block.shortcut_norm(x)
            found.append(torch.corrcoef(torch.stack([x.flatten(), g.flatten()]))[0, 1].item())

    hooks = [block.register_forward_hook(correlation) for block in model.layer3]
    with torch.no_grad():
        model.forward_features(torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    for hook in hooks:
        hook.remove()
    return found


def cell(stds):
    return " / ".join(f"{s:.2f}" for s in stds)


def rows():
    """(variant, rg_init) of every row: each variant, and each initialisation where it applies."""
    return [(name, init) for name, variant in VARIANTS.items() for init in variant.rg_inits()]


def header(model, depths):
    return [
        f"| {MODELS[model]}: variant | rg_init | " + " | ".join(f"depth {d}" for d in depths) + " |",
        "|---|---|" + "---|" * len(depths)
    ]


def markdown_table(model, depths=DEPTHS):
    """One model's table, as docs/ARCHITECTURE.md shows it (a test recomputes one cell)."""
    lines = header(model, depths)
    for variant, init in rows():
        cells = [cell(stage_stds(model, variant, d, init)) for d in depths]
        lines.append(f"| `{variant}` | {init} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _main(argv):
    p = argparse.ArgumentParser(prog="activation_growth", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    args = p.parse_args(argv)
    for model in MODELS:
        print(markdown_table(model, args.depths) + "\n", flush=True)
    return 0


def main(argv=None):
    return run_tool(_main, argv, "activation_growth")


if __name__ == "__main__":
    sys.exit(main())
