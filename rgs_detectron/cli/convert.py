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

from ..errors import ConfigError
from ..utils.commandline import output_file, run_tool


def get_parser():
    from ..engine.defaults import add_spec_args  # the spec's options list the variants and depths

    p = argparse.ArgumentParser(prog="convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "input", help=".pth / .pth.tar / .pt state dict (optionally under 'state_dict' or 'model'), "
        "or torchvision:ENUM.VALUE, e.g. torchvision:ResNet50_Weights.IMAGENET1K_V1")
    p.add_argument("output", type=output_file, help="the converted checkpoint (.pth)")
    p.add_argument("--config-file", metavar="FILE", help="the Detectron2 yaml you will fine-tune with (instead of "
                   "the model options below)")
    add_spec_args(p)
    p.add_argument("--rename", action="append", default=[], metavar="REGEX=REPLACEMENT",
                   help="rename input tensors before the name map (re.sub; repeatable, applied in order)")
    p.add_argument("--allow-partial", action="store_true",
                   help="write what matches instead of failing on unknown, missing or mis-shaped tensors")
    p.add_argument(
        "--warm-start-from-resnet", action="store_true",
        help="the input is a plain ResNet: copy its tensors into the variant's shared layers, start "
        "the variant's own layers at stated values (NOT the paper's protocol; docs/CONVERT.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides (with --config-file)")
    return p


def target(args):
    """(spec or None, cfg or None) for the command line's target description (None: the recorded one)."""
    from ..config import get_rgsnet_cfg
    from ..engine.defaults import SPEC_ARGS, spec_from_args
    from ..modeling.spec import RGSNetSpec

    given = [k for k in SPEC_ARGS if getattr(args, k) is not None]
    if args.config_file:
        if given:
            raise ConfigError("give either --config-file or the model description "
                              f"({', '.join('--' + k.replace('_', '-') for k in given)}), not both")
        cfg = get_rgsnet_cfg(args.config_file, args.opts)
        return RGSNetSpec.from_cfg(cfg), cfg
    if args.opts:
        raise ConfigError(f"KEY VALUE overrides {args.opts} need --config-file")
    if not given:
        return None, None  # a train_classifier checkpoint says what it is
    if "variant" not in given:
        raise ConfigError("give --variant (and --depth/--width-mult if not 50 / 1x) or --config-file "
                          "(only train_classifier checkpoints record their architecture)")
    return spec_from_args(args), None


def _main(argv):
    args = get_parser().parse_intermixed_args(argv)  # options may follow the positionals
    from ..checkpoint.conversion_report import settings_opts, settings_yaml
    from ..checkpoint.convert import convert_checkpoint

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
