"""Train or evaluate a detector from a LazyConfig (``.py``) file, as Detectron2's
``tools/lazyconfig_train_net.py`` does, with this project's guarantees.

    python -m rgs_detectron.cli.lazy_train_net --config-file configs/lazy/coco_res_rgs_50_fpn.py --num-gpus 8
    python -m rgs_detectron.cli.lazy_train_net --config-file ... --eval-only train.init_checkpoint=out/model_final.pth
    python -m rgs_detectron.cli.lazy_train_net --config-file out/config.yaml --eval-only --resume   # a run's own config
    python -m rgs_detectron.cli.lazy_train_net --config-file ... --resume
    python -m rgs_detectron.cli.lazy_train_net --config-file ... rgsnet.variant=b-RGS train.device=cpu

A ``.py`` LazyConfig is a Python file, and loading it runs it with your permissions: treat
it like code you run, and use only ones you wrote or trust. A ``.yaml`` LazyConfig (the
``config.yaml`` a run saves) is read as plain data, with no ``!!python`` tag, but its
``_target_`` keys still name the functions that build the model, data and optimizer: trust
it as you would a ``.py`` (docs/TRAINING.md, "Which files are code"). ``--eval-only`` writes into a new
``train.output_dir/eval_<time>/``, never over a training run's files. Overrides are
LazyConfig's ``key=value``, each naming a key the config has (``+key=value`` adds one).
Any Detectron2 LazyConfig works, RGSNet or not.
Before anything is built the nodes, device, datasets, weights and output folder are
checked (``--resume`` and ``--overwrite`` as for train_net) and ``train.output_dir`` is
locked against a second run; training boxes are checked (``train.invalid_boxes``),
checkpoints are atomic, weight loads strict for the backbone and safe, and
``model_final.pth`` is always written (see ``engine/lazy_trainer.py``). Exit status: 0
done, 1 failed, 2 usage error.
"""
import sys

from ..utils.commandline import run_tool


def run(cfg, args):
    from detectron2.engine import default_setup
    from detectron2.utils import comm
    from detectron2.utils.logger import setup_logger

    from ..engine.lazy_trainer import lazy_test, lazy_train
    from ..engine.predictor import load_trained_model

    default_setup(cfg, args)
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="rgs_detectron")
    if args.eval_only:
        return lazy_test(cfg, load_trained_model(cfg, resume=args.resume))
    return lazy_train(cfg, resume=args.resume)


def _main(argv):
    from ..config import load_lazy_config
    from ..engine.launch import argument_parser, eval_only_output, launch_run
    from ..engine.preflight import lazy_preflight
    from ..utils.previous_run import finish_interrupted_move

    args = argument_parser(__doc__).parse_args(argv)
    cfg = load_lazy_config(args.config_file, args.opts)
    finish_interrupted_move(cfg.get("train", {}).get("output_dir", ""), "lazy_train_net")
    lazy_preflight(cfg, args)
    if args.eval_only:
        train = cfg.train
        train.output_dir, train.init_checkpoint = eval_only_output(train.output_dir, train.get("init_checkpoint"), args)
    return launch_run(run, args, (cfg, args), cfg.train.output_dir, "lazy_train_net", cfg.train.get("device", "cuda"))


def main(argv=None):
    return run_tool(_main, argv, "lazy_train_net")


if __name__ == "__main__":
    sys.exit(main())
