"""Train or evaluate an RGSNet detector with Detectron2 (yaml configs).

    python -m rgs_detectron.cli.train_net --config-file configs/coco_res_rgs_50.yaml --num-gpus 8
    python -m rgs_detectron.cli.train_net --config-file ... --eval-only MODEL.WEIGHTS out/model_final.pth
    python -m rgs_detectron.cli.train_net --config-file ... --resume     # from OUTPUT_DIR/last_checkpoint

Detectron2's ``default_argument_parser`` (``--num-gpus``, ``--num-machines``,
``--machine-rank``, ``--dist-url``, trailing KEY VALUE overrides). Before anything is
built, the config, device, datasets, weights and output folder are checked
(``engine/preflight.py``: every problem in one message) and ``OUTPUT_DIR`` is locked
against a second run. A new run never replaces another run's model: an ``OUTPUT_DIR``
with checkpoints needs ``--resume`` (continue it) or ``--overwrite`` (start anew; the
old run's files are moved into ``previous_run_<time>/`` there, never deleted). ``--eval-only``
writes into a new ``OUTPUT_DIR/eval_<time>/``, never over a training run's files.
``MODEL.DEVICE cuda`` (Detectron2's default) without usable CUDA fails with PyTorch's
reason; the CPU is used only with ``MODEL.DEVICE cpu`` (``--num-gpus N`` then starts N CPU
processes on gloo). Config files are read as plain yaml: a ``!!python`` tag is refused.
"""
import sys

from ..utils.commandline import run_tool

__all__ = ["main", "setup", "run"]


def setup(args):
    """The frozen config of ``args``."""
    from ..config import get_rgsnet_cfg

    cfg = get_rgsnet_cfg(args.config_file, args.opts)
    cfg.freeze()
    return cfg


def run(cfg, args):
    """Train (or evaluate) in this process; returns the evaluation results."""
    from detectron2.engine import default_setup
    from detectron2.evaluation import verify_results
    from detectron2.utils import comm
    from detectron2.utils.logger import setup_logger

    from ..engine.predictor import load_trained_model
    from ..engine.trainer import RGSTrainer

    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="rgs_detectron")
    if args.eval_only:
        results = RGSTrainer.test(cfg, load_trained_model(cfg, resume=args.resume))
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = RGSTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def _main(argv):
    from ..engine.launch import argument_parser, eval_only_output, launch_run
    from ..engine.preflight import preflight
    from ..utils.previous_run import finish_interrupted_move

    args = argument_parser(__doc__).parse_args(argv)
    cfg = setup(args)
    finish_interrupted_move(cfg.OUTPUT_DIR, "train_net")
    preflight(cfg, args)
    if args.eval_only:
        cfg.defrost()
        cfg.OUTPUT_DIR, cfg.MODEL.WEIGHTS = eval_only_output(cfg.OUTPUT_DIR, cfg.MODEL.WEIGHTS, args)
        cfg.freeze()
    return launch_run(run, args, (cfg, args), cfg.OUTPUT_DIR, "train_net", cfg.MODEL.DEVICE)


def main(argv=None):
    return run_tool(_main, argv, "train_net")


if __name__ == "__main__":
    sys.exit(main())
