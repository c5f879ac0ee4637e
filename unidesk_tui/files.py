"""State files: atomic replacement and cross-process file locks.

Every state file (job.json, lock records, the plan cache, the mirror's reachable-commit cache) is
written with `atomic_write`, so a reader or a killed writer never leaves a torn file; every
read-modify-write across processes runs under `flocked`.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pid_running(pid: int) -> bool:
    """True while `pid` runs: a zombie (killed, not yet reaped by its parent) runs no more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return os.path.exists(f"/proc/{pid}") or not os.path.isdir("/proc")
    return not stat[stat.rfind(")") + 2 :].startswith("Z")


def _remove_dead_temps(path: Path) -> None:
    """Temp files of `path` left by writers that died before their rename (kill -9)."""
    prefix, me = f".{path.name}.", os.getpid()
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != me and not pid_running(int(pid)):
            (path.parent / name).unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Temp file, fsync, rename, fsync the directory: a reader sees the old or the new file.

    Temp files of this path whose writer died are removed first, so a kill -9 leaves no litter
    beyond the next write.
    """
    _remove_dead_temps(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@contextmanager
def flocked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
