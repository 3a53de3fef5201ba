"""Starting a training run the same way for both trainers.

* The output folder: a run that would replace another run's checkpoints is refused unless
  it resumes it (``--resume``) or says so (``--overwrite``); the folder is locked for the
  run's lifetime (on machine 0, where Detectron2 writes).
* Detectron2's ``launch``; CPU runs of several processes hide the GPUs from them, since
  ``launch`` would otherwise pick NCCL for CPU tensors.
* Errors carried home: in a multi-process launch a worker's user error cannot reach the
  parent as an exception (torch's spawn turns it into a traceback string), so the worker
  prints it as one line and exits with its status, which the parent returns.
"""
import os
import sys

from torch.multiprocessing import ProcessExitedException

from detectron2.engine import default_argument_parser, launch
from detectron2.utils import comm

from ..checkpoint.checkpointer import RGSCheckpointer
from ..utils.output_lock import OutputDirLock
from ..errors import ConfigError, UserError

__all__ = ["argument_parser", "check_output_dir", "launch_run", "resuming"]


def argument_parser():
    """Detectron2's ``default_argument_parser`` plus ``--overwrite``."""
    parser = default_argument_parser()
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new run in an output folder that holds one (its checkpoints are replaced)")
    return parser


def resuming(output_dir, args):
    """Whether ``args`` continue the run in ``output_dir`` (``--resume`` and a ``last_checkpoint`` to resume)."""
    return bool(args.resume and os.path.isfile(os.path.join(output_dir, "last_checkpoint")))


def check_output_dir(output_dir, args):
    """Refuse to start a new run over another run's checkpoints by accident (part of the preflight)."""
    checkpointer = RGSCheckpointer(None, output_dir)
    if args.eval_only or args.resume or args.overwrite or not checkpointer.has_checkpoint():
        return
    with open(os.path.join(output_dir, "last_checkpoint")) as f:
        last = f.read().strip()
    raise ConfigError(
        f"{output_dir!r} holds a run (last checkpoint {last}): --resume continues it, --overwrite starts a new run "
        "there (its checkpoints are replaced), or choose another output folder"
    )


class _Worker:
    """Picklable: torch's spawn needs a top-level callable."""

    def __init__(self, run, prog):
        self.run, self.prog = run, prog

    def __call__(self, *args):
        try:
            return self.run(*args)
        except UserError as e:
            if comm.get_world_size() == 1:
                raise
            print(f"{self.prog} (rank {comm.get_rank()}): error: {e}", file=sys.stderr)
            sys.exit(e.exit_code)


def launch_run(run, args, payload, output_dir, prog, device):
    """``run(*payload)`` in every process of ``args``' launch; returns an exit status."""
    if str(device).startswith("cpu") and args.num_gpus * args.num_machines > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the spawned processes then use gloo, as their tensors need
    lock = OutputDirLock(output_dir).acquire() if args.machine_rank == 0 else None
    try:
        launch(_Worker(run, prog), args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=payload)
    except ProcessExitedException as e:  # a worker ended with the error printed above
        return e.exit_code or 1
    finally:
        if lock:
            lock.release()
    return 0
