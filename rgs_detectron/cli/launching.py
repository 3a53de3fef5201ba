"""Starting a training run: the output folder locked, Detectron2's ``launch``, errors carried home.

In a multi-process launch a worker's user error cannot reach the parent as an exception
(torch's spawn turns it into a traceback string), so the worker prints it as one line and
exits with its status, which the parent returns.
"""
import sys

from detectron2.engine import launch
from detectron2.utils import comm

from ..engine.output_lock import OutputDirLock
from ..errors import UserError

__all__ = ["launch_run"]


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


def launch_run(run, args, payload, output_dir, prog):
    """``run(*payload)`` in every process of ``args``' launch, ``output_dir`` locked; an exit status."""
    with OutputDirLock(output_dir):
        try:
            launch(_Worker(run, prog), args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
                   dist_url=args.dist_url, args=payload)
        except Exception as e:
            if type(e).__name__ == "ProcessExitedException":  # a worker ended with the error printed above
                return getattr(e, "exit_code", 1) or 1
            raise
    return 0
