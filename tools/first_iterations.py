"""The first iterations of a ``train_net`` run, every loss of every iteration: how a start behaves.

    python tools/first_iterations.py --iterations 20 --output first.json --config-file CFG [KEY VALUE ...]

A developer tool (not installed), used by ``tools/pretrain_study.py`` to show whether a warm
start diverges. ``train_net``'s ``metrics.json`` holds losses only as medians over 20
iterations, and a run that diverges stops with a message. This builds the trainer as
``train_net`` does in one process (the same seed, initial weights, data order and learning-rate
schedule, for the full ``SOLVER.MAX_ITER``), runs its first ``--iterations`` steps and writes,
per iteration, the learning rate and each loss; a loss that becomes infinite or NaN ends the list
and is recorded as ``diverged_at``. Nothing else is written: no checkpoint, no evaluation.
The losses equal those of the run itself: the median of the first 20 is what ``metrics.json``
records at iteration 19 (tests/test_pretrain.py checks it).
"""
import argparse
import json
import sys
import tempfile

from rgs_detectron.utils.commandline import run_tool
from rgs_detectron.utils.fileio import atomic_write


def first_iterations(cfg, iterations):
    """``{"iterations": [{"iteration", "lr", "total_loss", "loss_*"}, ...], "diverged_at": int or None}``."""
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.events import EventStorage

    from rgs_detectron.engine.trainer import RGSTrainer

    seed_all_rng(cfg.SEED)  # as default_setup does in a one-process run
    trainer = RGSTrainer(cfg)
    trainer.resume_or_load(resume=False)
    rows, diverged_at = [], None
    with EventStorage(0) as storage:
        for it in range(iterations):
            storage.iter = trainer.iter = trainer._trainer.iter = it
            lr = trainer._trainer.optimizer.param_groups[0]["lr"]
            try:
                trainer._trainer.run_step()
            except FloatingPointError:
                diverged_at = it
                break
            losses = {k: v for k, (v, i) in storage.latest().items() if i == it and "loss" in k}
            rows.append({"iteration": it, "lr": lr, **losses})
            trainer.scheduler.step()
    return {"iterations": rows, "diverged_at": diverged_at}


def _main(argv):
    from rgs_detectron.cli.train_net import setup

    p = argparse.ArgumentParser(prog="first_iterations", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--output", required=True, help="the JSON file to write")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, as train_net takes them")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:  # what building the trainer writes (nothing is kept)
        cfg = setup(argparse.Namespace(config_file=args.config_file, opts=args.opts + ["OUTPUT_DIR", scratch]))
        result = first_iterations(cfg, args.iterations)
    atomic_write(args.output, lambda f: json.dump(result, f, indent=1), mode="w")
    print(f"{len(result['iterations'])} iterations" +
          (f", diverged at iteration {result['diverged_at']}" if result["diverged_at"] is not None else "") +
          f": {args.output}")
    return 0


def main(argv=None):
    return run_tool(_main, argv, "first_iterations")


if __name__ == "__main__":
    sys.exit(main())
