"""Starting a training run the same way for both trainers.

* The output folder: a new run never replaces another run's model. A folder holding
  checkpoints (``model_*.pth``, ``model_final.pth`` or ``last_checkpoint``) is refused
  unless the run resumes it (``--resume``) or says so (``--overwrite``). A new run starts
  clean: what an earlier run left there (checkpoints, ``last_checkpoint``, metrics, logs,
  events, ``config.yaml``, ``inference/``) is moved into ``previous_run_<time>/`` in that
  folder, never deleted, so a later ``--resume`` can only continue the new run
  (``utils/previous_run.py``: all or nothing, a killed move finished by the next run). An
  ``--eval-only`` run writes into a new ``eval_<time>/`` inside the output folder, so a
  training run's ``config.yaml``, log and ``inference/`` results are never written over. The
  folder written is locked for the run's lifetime (on machine 0, where Detectron2 writes).
* Detectron2's ``launch``; CPU runs of several processes hide the GPUs from them, since
  ``launch`` would otherwise pick NCCL for CPU tensors.
* Errors carried home: in a multi-process launch a worker's user error cannot reach the
  parent as an exception (torch's spawn turns it into a traceback string), so the worker
  prints it as one line and exits with its status, which the parent returns.
"""
import contextlib
import functools
import os
import re
import sys

from torch.multiprocessing import ProcessExitedException

from detectron2.engine import default_argument_parser, launch
from detectron2.utils import comm

from ..checkpoint.checkpointer import RGSCheckpointer
from ..errors import ConfigError, UserError, first_line
from ..utils.commandline import quiet_third_party_deprecations, user_message
from ..utils.output_lock import output_dir_lock
from ..utils.previous_run import move_previous_run, new_subfolder, run_files

__all__ = ["argument_parser", "check_output_dir", "eval_only_output", "launch_run", "resuming"]

CHECKPOINT_FILES = ("last_checkpoint", "model_*.pth")
RUN_FILES = CHECKPOINT_FILES + ("metrics.json", "log.txt*", "events.out.tfevents.*", "config.yaml", "inference",
                                "eval_*")


def argument_parser(doc):
    """Detectron2's ``default_argument_parser`` plus ``--overwrite``; ``doc`` (the command's docstring, with its
    own examples) replaces Detectron2's epilog of yacs examples."""
    parser = default_argument_parser()
    parser.description, parser.epilog = doc, None
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start a new run in an output folder that holds one; that run's files are moved into "
        "previous_run_<time>/ there (delete it yourself when no longer needed)")
    return parser


def resuming(output_dir, args):
    """Whether ``args`` continue the run in ``output_dir`` (``--resume`` and a ``last_checkpoint`` to resume)."""
    return bool(args.resume and os.path.isfile(os.path.join(output_dir, "last_checkpoint")))


def check_output_dir(output_dir, args):
    """Refuse a new run over another run's checkpoints unless ``--overwrite`` says so (part of the preflight)."""
    if args.eval_only:
        return
    if args.resume and args.overwrite:
        raise ConfigError("--resume continues a run and --overwrite starts a new one: give one of them")
    if resuming(output_dir, args):
        return
    found = run_files(output_dir, CHECKPOINT_FILES)
    if found and not args.overwrite:
        nothing = "--resume found no last_checkpoint to continue, and " if args.resume else ""
        raise ConfigError(f"{nothing}{output_dir!r} holds another run ({', '.join(found)}): --resume continues it, "
                          "--overwrite starts a new run there (the old run's files are moved into "
                          "previous_run_<time>/), or choose another output folder")


def eval_only_output(output_dir, weights, args):
    """(the folder an ``--eval-only`` run writes into: a new ``eval_<time>/`` in ``output_dir``, the weights it
    evaluates: ``weights``, or with ``--resume`` the last checkpoint of ``output_dir``, which ``args.resume`` then
    no longer asks for)."""
    if resuming(output_dir, args):
        weights = RGSCheckpointer(None, output_dir).get_checkpoint_file()
    args.resume = False
    return new_subfolder(output_dir, "eval_"), weights


def _worker(run, prog, checkpoints, *args):
    """``run(*args)`` in a launched process (top-level, so that torch's spawn can pickle it), with the command line's
    third-party notices silenced there too. A user error is printed as one line and becomes the process's exit
    status; so does a lost process of the run (gloo's or NCCL's error in a collective, when a process died or
    its machine did not answer within Detectron2's launch timeout, 30 minutes). ``checkpoints``: those a resumed
    run sees in its output folder, from which Detectron2 resumes each machine: the same on every one, or refused."""
    try:
        if checkpoints is not None and len(set(comm.all_gather(checkpoints))) > 1:
            raise ConfigError("--resume: the machines see different checkpoints in OUTPUT_DIR: on several machines "
                              "OUTPUT_DIR must be one folder that every machine shares")
        with quiet_third_party_deprecations():
            return run(*args)
    except (UserError, RuntimeError) as e:
        lost = not isinstance(e, UserError)
        if comm.get_world_size() == 1 or (lost and not re.search(r"gloo|NCCL", str(e))):
            raise
        why = (f"lost contact with another process of the run ({first_line(e)}); see the other machines' logs, "
               "then start every machine again with --resume") if lost else user_message(e)
        print(f"{prog} (rank {comm.get_rank()}): error: {why}", file=sys.stderr)
        sys.exit(1 if lost else e.exit_code)


def launch_run(run, args, payload, output_dir, prog, device):
    """``run(*payload)`` in every process of ``args``' launch, a new run in a clean folder; returns an exit status."""
    if str(device).startswith("cpu") and args.num_gpus * args.num_machines > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the spawned processes then use gloo, as their tensors need
    writer = args.machine_rank == 0
    with output_dir_lock(output_dir) if writer else contextlib.nullcontext():
        if writer and not args.eval_only and not resuming(output_dir, args):
            move_previous_run(output_dir, RUN_FILES, prog)  # check_output_dir allowed it
        seen = tuple(run_files(output_dir, CHECKPOINT_FILES)) if args.resume else None  # what this machine resumes
        try:
            launch(functools.partial(_worker, run, prog, seen), args.num_gpus, num_machines=args.num_machines,
                   machine_rank=args.machine_rank, dist_url=args.dist_url, args=payload)
        except ProcessExitedException as e:  # a worker ended with the error printed above
            return e.exit_code or 1
    return 0
