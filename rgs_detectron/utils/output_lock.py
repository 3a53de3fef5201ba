"""One training run per ``OUTPUT_DIR``.

Two runs writing to one folder overwrite each other's checkpoints, ``last_checkpoint``
and metrics without a word. A run holds an exclusive ``flock`` on
``OUTPUT_DIR/.rgs_detectron.lock`` for its lifetime; a second run fails at once, naming
the first. The kernel drops the lock when its process dies, however it dies, so a run
killed with ``kill -9`` never leaves a lock that blocks its ``--resume``.
"""
import fcntl
import os
import socket
import time

from ..errors import UserError

__all__ = ["OutputDirLock"]

LOCK_NAME = ".rgs_detectron.lock"


class OutputDirLock:

    def __init__(self, output_dir):
        self.path = os.path.join(output_dir, LOCK_NAME)
        self._fd = None

    def acquire(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"OUTPUT_DIR {os.path.dirname(self.path)!r} is in use by another run ({holder}); wait for it to "
                "finish or give this run another OUTPUT_DIR") from None
        os.ftruncate(fd, 0)
        os.write(fd,
                 f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
