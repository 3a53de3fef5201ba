"""One training run per ``OUTPUT_DIR``.

Two runs writing to one folder overwrite each other's checkpoints, ``last_checkpoint``
and metrics without a word. A run holds an exclusive ``flock`` on
``OUTPUT_DIR/.rgs_detectron.lock`` for its lifetime; a second run fails at once, naming
the first. The kernel drops the lock when its process dies, however it dies, so a run
killed with ``kill -9`` never leaves a lock that blocks its ``--resume``.
"""
import contextlib
import fcntl
import os
import socket
import time

from ..errors import UserError

__all__ = ["output_dir_lock"]

LOCK_NAME = ".rgs_detectron.lock"


@contextlib.contextmanager
def output_dir_lock(output_dir):
    """Hold ``output_dir``'s lock for the ``with`` block (the folder is made when missing), or a UserError at once,
    naming the process that holds it."""
    os.makedirs(output_dir, exist_ok=True)
    fd = os.open(os.path.join(output_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            raise UserError(f"OUTPUT_DIR {output_dir!r} is in use by another run ({holder}); wait for it to finish or "
                            "give this run another OUTPUT_DIR") from None
        os.ftruncate(fd, 0)
        os.write(fd,
                 f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # also for the forked processes (data loader workers) that share the file
    finally:
        os.close(fd)
