#!/usr/bin/env python
"""Backbone parameters and GFLOPs for every RGSNet variant, as a Markdown table.

    python tools/backbone_table.py --depth 50 --input-size 800 1333

Parameters are counted with trainable BN (as in the ImageNet classifier, without its fc);
GFLOPs of the bottom-up backbone (res2..res5) for one image, counted by Detectron2's
``FlopCountAnalysis`` (fvcore convention: one multiply-add = one flop; GroupNorm counted,
BN and element-wise ops not).
"""
import argparse

import torch

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.utils.analysis import FlopCountAnalysis

from rgs_detectron import VARIANTS, add_rgsnet_config
from rgs_detectron.modeling import build_rgsnet_backbone


def backbone_for(variant, depth, se):
    cfg = get_cfg()
    add_rgsnet_config(cfg)
    cfg.merge_from_list([
        "MODEL.RGSNET.VARIANT", variant, "MODEL.RESNETS.DEPTH", depth, "MODEL.RESNETS.NORM", "BN",
        "MODEL.BACKBONE.FREEZE_AT", 0, "MODEL.RESNETS.STRIDE_IN_1X1", False,
        "MODEL.RESNETS.OUT_FEATURES", ["res2", "res3", "res4", "res5"], "MODEL.RGSNET.SE_REDUCTION", se,
    ])
    return build_rgsnet_backbone(cfg, ShapeSpec(channels=3)).eval()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--input-size", type=int, nargs=2, default=[800, 1333], metavar=("H", "W"))
    p.add_argument("--no-flops", action="store_true", help="parameters only (fast)")
    a = p.parse_args(argv)
    rows = [(v, 0) for v in VARIANTS] + [("Res-RGS", 16)]
    print(f"| variant (depth {a.depth}) | parameters | added vs original | GFLOPs at {a.input_size[0]}x{a.input_size[1]} |")
    print("|---|---|---|---|")
    base = None
    x = torch.zeros(1, 3, *a.input_size)
    for variant, se in rows:
        model = backbone_for(variant, a.depth, se)
        params = sum(p.numel() for p in model.parameters())
        base = params if base is None else base
        flops = "-" if a.no_flops else f"{FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False).total() / 1e9:.2f}"
        name = variant + (f"+SE(r={se})" if se else "")
        print(f"| {name} | {params:,} | {params - base:+,} | {flops} |", flush=True)


if __name__ == "__main__":
    with torch.no_grad():
        main()
