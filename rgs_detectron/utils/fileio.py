"""Writing files so that nothing half-written is ever left under the final name.

Temporary files are named ``.NAME.PID.RANDOM.tmp`` beside the final file, so that the
ones a killed process left behind can be recognised and removed later
(:func:`remove_stale_temp_files`) without touching those of a live writer. ``NAME`` is cut
short where the whole name would pass the file system's 255-byte limit on one name.
"""
import contextlib
import errno
import os
import re
import shutil
import uuid

from ..errors import DiskFullError

__all__ = ["atomic_write", "temp_path", "remove_stale_temp_files"]

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")
NAME_MAX = 255  # bytes in one file name (Linux, macOS)


def temp_path(path):
    """A fresh hidden name beside ``path`` (same folder, so ``os.replace`` is an atomic rename)."""
    folder, name = os.path.split(os.path.abspath(path))
    suffix = f".{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    while len(os.fsencode(f".{name}{suffix}")) > NAME_MAX:
        name = name[:-1]
    return os.path.join(folder, f".{name}{suffix}")


def atomic_write(path, write_fn, mode="wb"):
    """Call ``write_fn(file)`` on a temporary file beside ``path``, flush it to disk, then
    rename it to ``path``. If ``write_fn`` raises, ``path`` keeps its old content and the
    temporary file is removed. A full disk raises :class:`DiskFullError` naming ``path``.
    The file gets the usual permissions (0666 less the umask).
    """
    tmp = temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if _is_disk_full(e):
            raise DiskFullError(
                errno.ENOSPC, f"no space left on device while writing {path!r}; the previous version "
                "(if any) is unchanged. Free space or choose another folder.") from None
        raise


def _is_disk_full(e):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left on device" in str(e) \
                or "file write failed" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def remove_stale_temp_files(folder):
    """Remove this module's temporary files in ``folder`` whose writing process is gone."""
    removed = []
    for entry in os.listdir(folder) if os.path.isdir(folder) else []:
        m = _TEMP.match(entry)
        if m and not _alive(int(m.group("pid"))):
            with contextlib.suppress(OSError):  # gone already, or not ours to remove
                os.remove(os.path.join(folder, entry))
                removed.append(entry)
    return removed


def _alive(pid):
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it does, as another user's
        pass
    return True


def check_room(folder, need, who="this run"):
    """Refuse before the first write when the file system of ``folder`` (or of its nearest existing parent) has
    less than the ``need`` bytes ``who`` needs: a full disk is one message, not a half-written file."""
    where = os.path.abspath(folder)
    while not os.path.exists(where):
        where = os.path.dirname(where)
    free = shutil.disk_usage(where).free
    if free < need:
        raise DiskFullError(
            errno.ENOSPC, f"{folder!r} has {free >> 20} MiB free and {who} needs about "
            f"{need >> 20} MiB: free space or choose another output folder")
