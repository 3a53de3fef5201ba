"""Convert an ImageNet RGSNet / torchvision ResNet checkpoint to Detectron2 weights.

    python -m rgs_detectron.cli.convert output/imagenet_res_rgs_50/model_final.pth Res-RGS-50.pth
    python -m rgs_detectron.cli.convert torchvision:ResNet50_Weights.IMAGENET1K_V1 R-50.pth --variant original
    python -m rgs_detectron.cli.convert res_rgs50.pth.tar Res-RGS-50.pth --variant Res-RGS
    python -m rgs_detectron.cli.convert b_rgs26.pth out.pth --variant b-RGS --depth 26 --width-mult 0.25
    python -m rgs_detectron.cli.convert in.pth out.pth --config-file configs/my.yaml [KEY VALUE ...]
    python -m rgs_detectron.cli.convert torchvision:ResNet50_Weights.IMAGENET1K_V1 b-RGS-50-warm.pth \\
        --variant b-RGS --warm-start-from-resnet

The input is a file or ``torchvision:ENUM.VALUE`` (torchvision's weights, taken from torch's
cache, ``$TORCH_HOME/hub/checkpoints``, and downloaded there when missing). The target
backbone is described by options (``RGSNetSpec.create``), by the config you will fine-tune
with, or, for ``train_classifier`` checkpoints, by the checkpoint itself (a target given
that contradicts the record is refused). The output records its architecture. See
docs/CONVERT.md. Exit status: 0 written, 1 the checkpoint cannot be converted (nothing
written), 2 usage error.
"""
import argparse
import sys

from ..config import get_rgsnet_cfg
from ..errors import ConfigError
from ..checkpoint.conversion_report import settings_opts, settings_yaml
from ..checkpoint.convert import convert_checkpoint
from ..modeling.spec import BLOCKS_PER_DEPTH, RGSNetSpec
from ..modeling.variants import VARIANTS
from ..engine.defaults import run_tool

_DESCRIPTION = ("variant", "depth", "width_mult", "blocks_per_stage", "stem_channels", "res2_out_channels",
                "num_groups", "width_per_group", "gn_groups", "se_reduction")


def get_parser():
    p = argparse.ArgumentParser(
        prog="convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("input", help=".pth / .pth.tar / .pt state dict (optionally under 'state_dict' or 'model'), "
                   "or torchvision:ENUM.VALUE, e.g. torchvision:ResNet50_Weights.IMAGENET1K_V1")
    p.add_argument("output", help="the converted checkpoint (.pth)")
    d = p.add_argument_group("target backbone (or --config-file)")
    d.add_argument("--config-file", metavar="FILE", help="the Detectron2 yaml you will fine-tune with")
    d.add_argument("--variant", help="one of: " + ", ".join(VARIANTS))
    d.add_argument("--depth", type=int, help=f"one of {', '.join(map(str, BLOCKS_PER_DEPTH))} (default 50)")
    d.add_argument("--width-mult", type=float, help="channel multiplier: 0.25, 0.5, 1, 2 (default 1)")
    d.add_argument("--blocks-per-stage", type=int, nargs=4, metavar="N", help="explicit blocks in res2..res5")
    d.add_argument("--stem-channels", type=int, help="stem output channels (default 64 x width)")
    d.add_argument("--res2-out-channels", type=int, help="res2 output channels (default 256 x width)")
    d.add_argument("--num-groups", type=int, help="ResNeXt cardinality (default 1)")
    d.add_argument("--width-per-group", type=int, help="bottleneck channels per group (default 64 x width)")
    d.add_argument("--gn-groups", type=int, help="GroupNorm groups (default: 32 scaled with width)")
    d.add_argument("--se-reduction", type=int, help="squeeze-and-excitation reduction (default 0: none)")
    p.add_argument("--rename", action="append", default=[], metavar="REGEX=REPLACEMENT",
                   help="rename input tensors before the name map (re.sub; repeatable, applied in order)")
    p.add_argument("--allow-partial", action="store_true",
                   help="write what matches instead of failing on unknown, missing or mis-shaped tensors")
    p.add_argument("--warm-start-from-resnet", action="store_true",
                   help="the input is a plain ResNet: copy its tensors into the variant's shared layers, start "
                   "the variant's own layers at stated values (NOT the paper's protocol; docs/CONVERT.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides (with --config-file)")
    return p


def target(args):
    """(spec or None, cfg or None) for the command line's target description (None: the recorded one)."""
    description = {k: getattr(args, k) for k in _DESCRIPTION if getattr(args, k) is not None}
    if args.config_file:
        if description:
            raise ConfigError("give either --config-file or the model description "
                              f"({', '.join('--' + k.replace('_', '-') for k in description)}), not both")
        cfg = get_rgsnet_cfg(args.config_file, args.opts)
        return RGSNetSpec.from_cfg(cfg), cfg
    if args.opts:
        raise ConfigError(f"KEY VALUE overrides {args.opts} need --config-file")
    if not description:
        return None, None  # a train_classifier checkpoint says what it is
    if "variant" not in description:
        raise ConfigError("give --variant (and --depth/--width-mult if not 50 / 1x) or --config-file "
                          "(only train_classifier checkpoints record their architecture)")
    return RGSNetSpec.create(**description), None


def _main(argv):
    args = get_parser().parse_intermixed_args(argv)  # options may follow the positionals
    spec, cfg = target(args)
    result = convert_checkpoint(args.input, args.output, spec, cfg=cfg, renames=args.rename,
                                allow_partial=args.allow_partial, overwrite=args.overwrite,
                                warm_start=args.warm_start_from_resnet)
    print("\n".join(result.summary()))
    print("\nFine-tune with these settings (yaml):\n")
    print(settings_yaml(result.settings))
    print("\nor as command-line overrides:\n")
    print(settings_opts(result.settings))
    return 0


def main(argv=None):
    return run_tool(_main, argv, "convert")


if __name__ == "__main__":
    sys.exit(main())
