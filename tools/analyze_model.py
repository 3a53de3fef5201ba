#!/usr/bin/env python
"""Parameters, FLOPs and activations of any detector config, as a table (a developer tool, as Detectron2's
own tools/analyze_model.py: not installed with the package).

    python tools/analyze_model.py --config-file configs/coco_res_rgs_50_fpn.yaml \\
        [--weights model.pth] [--input-size 800 1333] [--max-depth 3] [--device cpu] [KEY VALUE ...]

Counts are for one image of ``--input-size`` (H W) in inference mode, the model built from
the config, with random weights unless ``--weights`` is given. Counts do not depend on the
weights, except the ROI heads': they scale with the proposals the RPN keeps, which the
table's footnote reports (random weights can keep very few). FLOPs follow fvcore's convention
(one fused multiply-add = one flop), counted by Detectron2's ``FlopCountAnalysis`` on the
whole model; element-wise ops, NMS and batch norm are not counted (Detectron2's choice),
GroupNorm is (fvcore: 5 flops per element), so the RG shortcut's GN shows up. Activations are
fvcore's ``ActivationCountAnalysis`` (output elements of convolutions and matmuls).
``--max-depth N`` adds fvcore's per-module table down to depth N. Weights, when given, load
strictly, every tensor of the model from them (``load_trained_model``). Exit status: 0 done, 1 bad
weights, 2 usage error.
"""
import argparse
import logging
import sys
import warnings
from collections import defaultdict

import torch
from fvcore.nn import ActivationCountAnalysis, flop_count_table, parameter_count
from tabulate import tabulate

from detectron2.export import TracingAdapter
from detectron2.modeling import build_model
from detectron2.utils.analysis import FlopCountAnalysis
from detectron2.utils.logger import setup_logger

from rgs_detectron.engine.defaults import load_cfg
from rgs_detectron.engine.predictor import load_trained_model
from rgs_detectron.utils.commandline import add_config_args, positive_int, run_tool


def get_parser():
    parser = argparse.ArgumentParser(prog="analyze", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="",
                        help="checkpoint to load (counts are the same, except the proposals kept)")
    parser.add_argument("--input-size", nargs=2, type=positive_int, default=[800, 1333], metavar=("H", "W"))
    parser.add_argument("--max-depth", type=int, default=0, help="also print fvcore's table to this depth")
    return add_config_args(parser)


def _rows(model):
    """(label, module path) for each top-level module, with the backbone's parts split out."""
    rows = []
    for name, child in model.named_children():
        label = f"{name} (total)" if name == "backbone" and hasattr(child, "bottom_up") else name
        rows.append((label, name))
        if name == "backbone" and hasattr(child, "bottom_up"):
            rows.append(("  backbone.bottom_up", "backbone.bottom_up"))
            rows.append(("  backbone FPN layers", None))  # total minus bottom-up
    return rows


def analyze(cfg, height, width, max_depth=0):
    """Return the summary table (and fvcore's detailed one if ``max_depth``) as text."""
    torch.manual_seed(0)  # random weights, but the same ones (and proposals) every run
    model = load_trained_model(cfg) if cfg.MODEL.WEIGHTS else build_model(cfg).eval()
    # The ROI-head cost scales with the proposals the RPN keeps; record how many it had.
    proposals = []
    if getattr(model, "roi_heads", None) is not None and getattr(model, "proposal_generator", None) is not None:
        model.roi_heads.register_forward_pre_hook(lambda module, args: proposals.append(int(len(args[2][0]))))
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    inputs = [{"image": image.to(cfg.MODEL.DEVICE)}]

    params = parameter_count(model)  # keyed by every module path prefix, "" = whole model
    trainable = defaultdict(int)  # FREEZE_AT and FrozenBN leave parameters untrainable
    for name, p in model.named_parameters():
        if p.requires_grad:
            parts = name.split(".")
            for i in range(len(parts) + 1):
                trainable[".".join(parts[:i])] += p.numel()

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flops = FlopCountAnalysis(model, inputs)
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        flops_by_module = flops.by_module()
        # Detectron2 wraps only FlopCountAnalysis; the same adapter serves activations.
        adapter = TracingAdapter(model, inputs, allow_non_tensor=True)
        acts = ActivationCountAnalysis(adapter, adapter.flattened_inputs)
        acts.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        acts_by_module = acts.by_module()

    # The analyses trace a wrapper that holds the detector as ".model".
    def counted(table, path):
        return table.get("model" + ("." + path if path else ""), 0)

    table = []
    for label, path in _rows(model) + [("total", "")]:
        if path is None:  # FPN layers = backbone total - bottom-up
            values = [
                params["backbone"] - params["backbone.bottom_up"],
                trainable["backbone"] - trainable["backbone.bottom_up"],
                counted(flops_by_module, "backbone") - counted(flops_by_module, "backbone.bottom_up"),
                counted(acts_by_module, "backbone") - counted(acts_by_module, "backbone.bottom_up"),
            ]
        else:
            values = [params[path], trainable[path], counted(flops_by_module, path), counted(acts_by_module, path)]
        p, t, f, a = values
        table.append([label, f"{p / 1e6:.3f}", f"{t / 1e6:.3f}", f"{f / 1e9:.2f}", f"{a / 1e6:.2f}"])
    text = (f"{cfg.MODEL.META_ARCHITECTURE} with {cfg.MODEL.BACKBONE.NAME}" +
            (f" ({cfg.MODEL.RGSNET.VARIANT}, depth {cfg.MODEL.RESNETS.DEPTH})" if "RGSNET" in cfg.MODEL else "") +
            f", input 3x{height}x{width}, device {cfg.MODEL.DEVICE}\n" + tabulate(
                table,
                headers=["module", "params (M)", "trainable (M)", "GFLOPs", "activations (M)"],
                tablefmt="pipe",
                disable_numparse=True,
                colalign=("left", "right", "right", "right", "right"),
            ))
    if proposals:
        topk = cfg.MODEL.RPN.POST_NMS_TOPK_TEST
        text += f"\nROI heads counted on {proposals[0]} RPN proposals (MODEL.RPN.POST_NMS_TOPK_TEST = {topk})"
        if not cfg.MODEL.WEIGHTS:
            text += "; random weights: pass --weights for a trained model's proposal count"
    if max_depth > 0:
        text += "\n\n" + flop_count_table(flops, max_depth=max_depth, activations=acts)
    return text


def _main(argv):
    args = get_parser().parse_args(argv)
    setup_logger(name="detectron2", output=None).setLevel(logging.WARNING)
    cfg = load_cfg(args, weights=args.weights)
    print(analyze(cfg, *args.input_size, max_depth=args.max_depth))
    return 0


def main(argv=None):
    return run_tool(_main, argv, "analyze")


if __name__ == "__main__":
    sys.exit(main())
