"""Moving an earlier run's files aside, so that a new run starts clean and nothing is deleted.

A new run started over another in one folder (``train_net``/``lazy_train_net --overwrite``,
``train_classifier --overwrite``) first moves that run's files into ``previous_run_<time>/``
there; a later ``--resume`` can then only continue the new run. The move is all or nothing:

* before anything moves, the folder and every subfolder to move are checked to be writable and
  no entry to be a mount point; an entry that still will not move (an immutable file) makes the
  move undo itself at once. Either way the folder is as it was, and one line names the entry;
* the names to move are written first into ``previous_run_<time>/.moving``. A move killed half-way
  leaves that list, and the next run in the folder, of any of these commands, finishes the move
  (under the folder's lock) before it looks at the folder: the killed run had started a new run,
  so the folder is left as after a whole move.
"""
import fnmatch
import glob
import json
import os
import sys
import time

from ..errors import InputError
from .fileio import atomic_write
from .output_lock import output_dir_lock

__all__ = ["run_files", "new_subfolder", "move_previous_run", "finish_interrupted_move"]

JOURNAL = ".moving"


def run_files(folder, patterns):
    """The names in ``folder`` that match any of the glob ``patterns``, sorted."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns))


def new_subfolder(folder, prefix):
    """A path ``folder/<prefix><date-time>`` that does not exist yet."""
    path = os.path.join(folder, time.strftime(f"{prefix}%Y%m%d-%H%M%S"))
    while os.path.exists(path):
        path += "_"
    return path


def _unmovable(folder, names):
    """(entry, why) for the first entry that a rename into a subfolder would refuse, or None."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return folder, "the folder is not writable"
    for name in names:
        path = os.path.join(folder, name)
        if os.path.ismount(path):
            return path, "it is a mount point"
        if os.path.isdir(path) and not os.path.islink(path) and not os.access(path, os.W_OK):
            return path, "it is a folder that cannot be written (moving a folder rewrites its '..')"
    return None


def move_previous_run(folder, patterns, prog):
    """Move the entries of ``folder`` that match ``patterns`` into a new ``previous_run_<time>/`` there, all or
    nothing (see the module docstring); returns that folder, or None when nothing matched."""
    names = run_files(folder, patterns)
    unmovable = _unmovable(folder, names) if names else None
    if names and not unmovable:
        target, moved = new_subfolder(folder, "previous_run_"), []
        os.makedirs(target)
        atomic_write(os.path.join(target, JOURNAL), lambda f: json.dump(names, f), mode="w")
        try:
            for name in names:
                os.replace(os.path.join(folder, name), os.path.join(target, name))
                moved.append(name)
            os.remove(os.path.join(target, JOURNAL))
            print(
                f"{prog}: a new run starts in {folder}; the previous run's files ({', '.join(names)}) are now in "
                f"{target} (delete it when you no longer need it)", file=sys.stderr)
            return target
        except OSError as e:
            for name in reversed(moved):
                os.replace(os.path.join(target, name), os.path.join(folder, name))
            os.remove(os.path.join(target, JOURNAL))
            os.rmdir(target)
            unmovable = os.path.join(folder, names[len(moved)]), e.strerror
    if unmovable:
        raise InputError(f"cannot move the previous run in {folder} aside: {unmovable[0]} cannot move "
                         f"({unmovable[1]}); every file is where it was. Fix that, or choose another output folder")
    return None


def finish_interrupted_move(folder, prog):
    """Finish every move aside in ``folder`` that a kill interrupted (call it without holding the folder's lock)."""
    journals = glob.glob(os.path.join(glob.escape(folder), "previous_run_*", JOURNAL))
    if not journals:
        return
    with output_dir_lock(folder):  # a run still moving holds it: then this is refused, naming that run
        for journal in journals:
            target = os.path.dirname(journal)
            with open(journal) as f:
                names = json.load(f)
            for name in names:
                if os.path.lexists(os.path.join(folder, name)) and not os.path.lexists(os.path.join(target, name)):
                    os.replace(os.path.join(folder, name), os.path.join(target, name))
            os.remove(journal)
            print(
                f"{prog}: a new run started in {folder} was killed while it moved the previous run aside; that move "
                f"is now finished: the previous run's files are in {target}", file=sys.stderr)
