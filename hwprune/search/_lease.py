"""Leases: named mutual exclusion across the processes and machines of one study.

Two uses: the study's own bookkeeping (claiming one of the ``--trials`` slots, choosing
the winner once) and **devices**: at most one measurement runs on a device at a time,
whichever worker asks (the host while the winner is timed, a board through the worker
runner, a phone over TVM RPC)::

    lease = open_lease(spec)                 # the study's storage
    with lease.hold(device_lease_name(profile)) as held:
        ...                                  # time on the device
    held.wait_s                              # how long this worker waited for it

* RDB storages: one row per lease in the table ``hwprune_leases`` of the same database
  (an atomic conditional ``UPDATE`` takes it). A lease expires ``ttl_s`` after its last
  renewal; the holder renews it from a thread, so a worker killed with SIGKILL frees it
  after at most ``ttl_s``. Expiry compares the workers' wall clocks (keep them NTP-synced).
* journal storages (one machine): ``fcntl.flock`` on a file next to the journal; the
  kernel frees it when the holder dies.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from hwprune.errors import ConfigError, DeviceTimeoutError

__all__ = ["FileLease", "Held", "Lease", "LocalLease", "RdbLease", "device_lease_name", "open_lease", "worker_id"]

_POLL_S = 0.05


def worker_id() -> str:
    """This process across machines: ``host-pid-random``."""
    return f"{platform.node() or 'host'}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def device_lease_name(device: str, local: bool) -> str:
    """The lease of one physical device: the host is per machine, a board or phone is
    shared by name (its profile, runner or RPC key)."""
    return f"device:{device}@{platform.node()}" if local else f"device:{device}"


@dataclass
class Held:
    """A held lease: its name and how long the holder waited for it."""

    name: str
    wait_s: float = 0.0


class Lease:
    """Named leases shared by every worker of a storage. Subclasses implement
    ``_try(name, ttl_s)`` (take it if free), ``_renew`` and ``_release``."""

    def __init__(self) -> None:
        self.owner = worker_id()

    def _try(self, name: str, ttl_s: float) -> bool:
        raise NotImplementedError

    def _renew(self, name: str, ttl_s: float) -> None:
        pass

    def _release(self, name: str) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def hold(self, name: str, *, ttl_s: float = 30.0, timeout_s: float | None = None) -> Iterator[Held]:
        """Wait for ``name`` (at most ``timeout_s``; None: forever), hold it for the block."""
        t0 = time.perf_counter()
        while not self._try(name, ttl_s):
            if timeout_s is not None and time.perf_counter() - t0 > timeout_s:
                raise DeviceTimeoutError(f"lease '{name}' still held by another worker after "
                                         f"{timeout_s:.0f} s")
            time.sleep(_POLL_S)
        held = Held(name, time.perf_counter() - t0)
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew_loop, args=(name, ttl_s, stop), daemon=True)
        renewer.start()
        try:
            yield held
        finally:
            stop.set()
            renewer.join()
            self._release(name)

    def _renew_loop(self, name: str, ttl_s: float, stop: threading.Event) -> None:
        while not stop.wait(ttl_s / 3):
            with contextlib.suppress(Exception):  # a missed renewal only shortens the lease
                self._renew(name, ttl_s)


class LocalLease(Lease):
    """Leases within this process (a run directory's own study: no other worker)."""

    _locks: dict[str, threading.Lock] = {}

    def _try(self, name: str, ttl_s: float) -> bool:
        return self._locks.setdefault(name, threading.Lock()).acquire(blocking=False)

    def _release(self, name: str) -> None:
        self._locks[name].release()


class FileLease(Lease):
    """Leases as ``flock`` ed files in ``folder`` (one machine)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__()
        self.folder = Path(folder)
        self._files: dict[str, Any] = {}

    def _path(self, name: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80]
        return self.folder / f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}.lock"

    def _try(self, name: str, ttl_s: float) -> bool:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        f = open(self._path(name), "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return False
        self._files[name] = f
        return True

    def _release(self, name: str) -> None:
        import fcntl

        f = self._files.pop(name)
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


class RdbLease(Lease):
    """Leases as rows of ``hwprune_leases`` in the study's database."""

    TABLE = "hwprune_leases"

    def __init__(self, url: str, engine_kwargs: dict[str, Any] | None = None) -> None:
        import sqlalchemy as sa

        super().__init__()
        self.engine = sa.create_engine(url, **(engine_kwargs or {}))
        meta = sa.MetaData()
        self.table = sa.Table(self.TABLE, meta,
                              sa.Column("name", sa.String(255), primary_key=True),
                              sa.Column("owner", sa.String(255), nullable=True),
                              sa.Column("expires", sa.Float, nullable=False, default=0.0))
        with contextlib.suppress(Exception):  # a concurrent worker created it first
            meta.create_all(self.engine, checkfirst=True)

    def _try(self, name: str, ttl_s: float) -> bool:
        import sqlalchemy as sa

        t, now = self.table, time.time()
        with self.engine.begin() as conn:
            taken = conn.execute(sa.update(t).where(t.c.name == name)
                                 .where(sa.or_(t.c.owner.is_(None), t.c.expires < now))
                                 .values(owner=self.owner, expires=now + ttl_s)).rowcount
        if taken:
            return True
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(t).values(name=name, owner=self.owner, expires=now + ttl_s))
            return True
        except sa.exc.IntegrityError:  # the row exists and is held
            return False

    def _renew(self, name: str, ttl_s: float) -> None:
        import sqlalchemy as sa

        t = self.table
        with self.engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.name == name).where(t.c.owner == self.owner)
                         .values(expires=time.time() + ttl_s))

    def _release(self, name: str) -> None:
        import sqlalchemy as sa

        t = self.table
        with self.engine.begin() as conn:
            conn.execute(sa.update(t).where(t.c.name == name).where(t.c.owner == self.owner)
                         .values(owner=None, expires=0.0))


def open_lease(spec: Any) -> Lease:
    """The leases of a :class:`~hwprune.search._storage.StorageSpec` (RDB rows or lock
    files next to the journal)."""
    from hwprune.search._storage import _engine_kwargs

    if spec.kind == "journal":
        return FileLease(Path(str(spec.journal_path) + ".locks"))
    try:
        return RdbLease(spec.url, _engine_kwargs(spec.url))
    except Exception as exc:
        raise ConfigError(f"cannot open the lease table in '{spec.masked}': "
                          f"{spec.scrub(str(exc)).splitlines()[0]}") from None
