"""One writer per output: advisory file locks, and the cleanup of what dead writers left.

Every command that writes a results file (``extract``, ``match-pairs``, ``colmap``) holds an
exclusive lock on it for the whole run (:func:`exclusive`): a second run on the same output
refuses at once, naming the holder's PID and command, instead of deleting the first run's work.
The lock is ``fcntl.flock`` on a small hidden file beside the output (``.<name>.lock``, holding
the PID and command line for messages), released by the kernel when the process ends however it
ends, so a killed run never leaves a stale lock. Since every writer of an output holds its lock,
the temporary files of :func:`keypoints.io.atomic_write` found for it on acquiring the lock
belong to dead runs and are removed then.

:func:`waiting` is the blocking form, for caches several threads or processes may fill at once
(the ONNX export).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import KeypointsError
from .files import temp_prefix

__all__ = ["BusyError", "LockFileError", "exclusive", "waiting", "lock_path", "remove_orphans"]


class BusyError(KeypointsError, RuntimeError):
    """Another run is writing the same output."""


class LockFileError(KeypointsError, OSError):
    """The lock file cannot be created (a read-only or missing folder): an OS error too."""


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of output ``path``: ``.<name>.lock`` in the same folder."""
    path = Path(path)
    return path.with_name(f"{temp_prefix(path)}lock")


def remove_orphans(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`~keypoints.io.atomic_write` for ``path``.

    Only call it while holding the output's lock (then they belong to dead runs). Returns the
    paths removed.
    """
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for tmp in path.parent.glob(f"{_glob_escape(temp_prefix(path))}*.tmp"):
            try:
                if tmp.is_dir():
                    continue
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _holder(lock: Path) -> str:
    try:
        text = lock.read_text(errors="replace").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition(" ")
    return f"PID {pid}: {command}" if pid.isdigit() else "another process"


def _open_lock(path: Path) -> int:
    lock = lock_path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise LockFileError(
            f"cannot create the lock file {lock} ({error.strerror or error}); is the folder "
            "writable?"
        ) from None


@contextmanager
def exclusive(path: str | os.PathLike, command: str | None = None) -> Iterator[None]:
    """Hold the exclusive lock of output ``path`` for the ``with`` block, or refuse at once.

    Args:
        path: the output file (its lock is ``.<name>.lock`` beside it).
        command: what the holder is doing, shown to a second run (default: this process's
            command line).

    Raises:
        BusyError: another process (or another lock in this one) holds it; the message names
            its PID and command.
    """
    import fcntl

    path = Path(path)
    fd = _open_lock(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BusyError(
                f"{path} is being written by another keypoints run ({_holder(lock_path(path))}); "
                "wait for it to finish, or write to another output"
            ) from None
        text = f"{os.getpid()} {command or ' '.join(['keypoints', *sys.argv[1:]])}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode("utf-8", "replace"), 0)
        remove_orphans(path)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


@contextmanager
def waiting(path: str | os.PathLike) -> Iterator[None]:
    """Hold the lock of ``path`` for the ``with`` block, waiting for other holders.

    Serializes threads of this process and other processes (a cache entry is made by one of
    them; the others find it made).
    """
    import fcntl

    key = str(Path(path).resolve())
    with _THREAD_LOCKS_GUARD:
        thread_lock = _THREAD_LOCKS.setdefault(key, threading.Lock())
    with thread_lock:
        fd = _open_lock(Path(path))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
