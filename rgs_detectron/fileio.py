"""Writing files so that nothing half-written is ever left under the final name."""
import os
import uuid


def atomic_write(path, write_fn, mode="wb"):
    """Call ``write_fn(file)`` on a temporary file beside ``path``, flush it to disk, then
    rename it to ``path``. If ``write_fn`` raises (or the process dies), ``path`` keeps its
    old content and the temporary file is removed (or, after a kill, left under a hidden
    ``.NAME.*.tmp`` name that nothing reads). The file gets the usual permissions (0666
    less the umask), not ``mkstemp``'s 0600.
    """
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
