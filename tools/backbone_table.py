"""Backbone parameters and GFLOPs for every RGSNet variant, as a Markdown table.

    python tools/backbone_table.py --depth 50 --input-size 800 1333

Parameters are counted with trainable BN (as in the ImageNet classifier, without its fc);
GFLOPs of the bottom-up backbone (res2..res5) for one image, counted by Detectron2's
``FlopCountAnalysis`` (fvcore convention: one multiply-add = one flop; GroupNorm counted,
BN and element-wise ops not). Each model comes from ``RGSNetSpec.create`` (the torchvision
layout, ``stride_in_1x1=False``, as the shipped configs).
"""
import argparse
import sys

import torch

from detectron2.utils.analysis import FlopCountAnalysis

from rgs_detectron.modeling.backbone import RGSNet
from rgs_detectron.modeling.spec import RGSNetSpec
from rgs_detectron.modeling.variants import VARIANTS
from rgs_detectron.utils.commandline import run_tool


def backbone_for(variant, depth, width_mult=1.0, se_reduction=0):
    spec = RGSNetSpec.create(variant, depth, width_mult, se_reduction=se_reduction, norm="BN")
    return RGSNet(spec=spec, out_features=["res2", "res3", "res4", "res5"]).eval()


def _main(argv):
    p = argparse.ArgumentParser(prog="backbone_table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--input-size", type=int, nargs=2, default=[800, 1333], metavar=("H", "W"))
    p.add_argument("--no-flops", action="store_true", help="parameters only (fast)")
    a = p.parse_args(argv)
    rows = [(v, 0) for v in VARIANTS] + [("Res-RGS", 16)]
    print(f"| variant (depth {a.depth}, {a.width_mult:g}x) | parameters | added vs original | "
          f"GFLOPs at {a.input_size[0]}x{a.input_size[1]} |")
    print("|---|---|---|---|")
    base = None
    x = torch.zeros(1, 3, *a.input_size)
    for variant, se in rows:
        model = backbone_for(variant, a.depth, a.width_mult, se)
        params = sum(p.numel() for p in model.parameters())
        base = params if base is None else base
        if a.no_flops:
            flops = "-"
        else:
            with torch.no_grad():
                count = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
                flops = f"{count.total() / 1e9:.2f}"
        name = variant + (f" + SE (r={se})" if se else "")
        print(f"| {name} | {params:,} | {params - base:+,} | {flops} |", flush=True)
    return 0


def main(argv=None):
    return run_tool(_main, argv, "backbone_table")


if __name__ == "__main__":
    sys.exit(main())
