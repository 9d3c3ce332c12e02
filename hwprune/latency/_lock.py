"""The advisory lock of one table in one folder, across processes (and threads).

``fcntl.flock`` on ``<folder>/<device>.lock``: a save (read what is on disk, merge, write)
and every journal append hold it, so two ``hwprune profile`` runs on one folder never
write over each other. flock locks belong to an open file description, so two threads
of one process that each open the lock file also exclude each other. A process that has
to wait says so on stderr, once.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import threading
from pathlib import Path
from typing import Iterator

__all__ = ["table_lock", "lock_path"]

_reported: set[str] = set()
_reported_guard = threading.Lock()


def lock_path(directory: Path, device: str) -> Path:
    return Path(directory) / f"{device}.lock"


@contextlib.contextmanager
def table_lock(directory: Path, device: str) -> Iterator[None]:
    """Hold the exclusive lock of ``device``'s table in ``directory`` (created if needed)."""
    path = lock_path(directory, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with _reported_guard:
                first = str(path) not in _reported
                _reported.add(str(path))
            if first:
                print(f"hwprune: waiting for another hwprune process writing the '{device}' table "
                      f"({path})", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
