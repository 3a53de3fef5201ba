#!/usr/bin/env python
"""Convert an ImageNet RGSNet / torchvision ResNet checkpoint to Detectron2 format.

    python tools/convert_rgsnet_to_d2.py resnet50.pth R-50.pth --variant original
    python tools/convert_rgsnet_to_d2.py res_rgs50.pth.tar Res-RGS-50.pkl --variant Res-RGS
    python tools/convert_rgsnet_to_d2.py in.pth out.pth --config-file configs/my.yaml [KEY VALUE ...]

A thin command line over ``rgs_detectron.checkpoint``; see docs/CONVERT.md.
"""
import argparse
import sys

from rgs_detectron.checkpoint import (
    ConversionError,
    convert_checkpoint,
    settings_opts,
    settings_yaml,
    target_cfg,
)
from rgs_detectron.config import VARIANTS


def get_parser():
    p = argparse.ArgumentParser(
        description="Convert a torchvision-style ImageNet checkpoint (RGSNet or ResNet) to Detectron2 format.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Output ending in .pkl is a pickle of numpy arrays; anything else is written with torch.save.",
    )
    p.add_argument("input", help=".pth / .pth.tar / .pt state dict (optionally under 'state_dict' or 'model')")
    p.add_argument("output", help="converted checkpoint (.pth, or .pkl)")
    desc = p.add_argument_group("target backbone (or --config-file)")
    desc.add_argument("--config-file", metavar="FILE", help="a Detectron2 yaml describing the backbone to fine-tune")
    desc.add_argument("--variant", help="one of: " + ", ".join(VARIANTS))
    desc.add_argument("--depth", type=int, help="26, 32, 38, 44, 50, 62, 77, 101, 152 or 200 (default 50)")
    desc.add_argument("--width", type=float, help="channel multiplier: 0.25, 0.5, 1, 2 (default 1)")
    desc.add_argument("--blocks-per-stage", type=int, nargs=4, metavar="N", help="explicit blocks in res2..res5")
    desc.add_argument("--stem-channels", type=int, help="stem output channels (default 64 x width)")
    desc.add_argument("--res2-out-channels", type=int,
                      help="res2 output channels (default 256 x width)")
    desc.add_argument("--num-groups", type=int, help="ResNeXt cardinality (default 1)")
    desc.add_argument("--width-per-group", type=int, help="bottleneck channels per group (default 64 x width)")
    desc.add_argument("--gn-groups", type=int, help="GroupNorm groups (default: 32 scaled with width)")
    desc.add_argument("--se-reduction", type=int, help="squeeze-and-excitation reduction (default 0: none)")
    p.add_argument("--rename", action="append", default=[], metavar="REGEX=REPLACEMENT",
                   help="rename input tensors before the name map (re.sub; repeatable, applied in order)")
    p.add_argument("--allow-partial", action="store_true",
                   help="write what matches instead of failing on unknown, missing or mis-shaped tensors")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE",
                   help="config overrides, as in Detectron2's tools (e.g. MODEL.RGSNET.GN_GROUPS 16)")
    return p


def main(argv=None):
    args = get_parser().parse_intermixed_args(argv)  # options may follow the positionals
    names = ("variant", "depth", "width", "blocks_per_stage", "stem_channels", "res2_out_channels", "num_groups",
             "width_per_group", "gn_groups", "se_reduction")
    description = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    try:
        if not args.config_file and "variant" not in description:
            raise ConversionError("give --variant (and --depth/--width if not 50 / 1x) or --config-file")
        cfg = target_cfg(args.config_file, args.opts, **description)
        result = convert_checkpoint(args.input, args.output, cfg, renames=args.rename,
                                    allow_partial=args.allow_partial, overwrite=args.overwrite)
    except (ConversionError, ValueError) as e:
        print(f"convert_rgsnet_to_d2: error: {e}", file=sys.stderr)
        return 1
    print("\n".join(result.summary()))
    print("\nFine-tune with these settings (yaml):\n")
    print(settings_yaml(result.settings))
    print("\nor as command-line overrides:\n")
    print(settings_opts(result.settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
