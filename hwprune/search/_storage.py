"""Where a study lives: an RDB URL or a journal file, opened with heartbeats.

``--storage`` accepts

* an RDB URL: ``postgresql://user:pw@host/db`` (psycopg 3, ``pip install 'hwprune[postgres]'``),
  ``postgresql+psycopg2://...`` (``pip install psycopg2-binary``), ``sqlite:///study.db``
  (processes on one machine), ``mysql+pymysql://...``;
* a journal file path ending in ``.journal`` (processes on one machine);
* ``env:NAME``: the URL is read from the environment variable ``NAME`` (so it stays out of
  shell history and ``ps``). The CLI's default is ``$HWPRUNE_STORAGE``.

A password in a URL is secret: :func:`mask_url` is the only form that is ever printed or
stored (``postgresql://user:***@host/db``), and :func:`scrub` removes it from error text.

Both kinds record heartbeats while a trial runs (Optuna's RDB ``heartbeat_interval`` /
``grace_period``; for the journal, :class:`HeartbeatJournalStorage` keeps one heartbeat
file per running trial). A trial whose worker stopped beating for ``grace_period_s`` is
failed by the next worker that looks, and its parameters are re-queued
(``RetryHeartbeatStaleTrialCallback``).
"""
from __future__ import annotations

import importlib.util
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from hwprune.errors import ConfigError, MissingDependencyError

__all__ = ["StorageSpec", "mask_url", "open_storage", "resolve_storage", "scrub"]

ENV_DEFAULT = "HWPRUNE_STORAGE"
HEARTBEAT_S = 10
GRACE_PERIOD_S = 60

# SQLAlchemy driver name -> (module to import, the install command that provides it)
_DRIVERS = {
    "psycopg": ("psycopg", "pip install 'hwprune[postgres]'  (psycopg 3)"),
    "psycopg2": ("psycopg2", "pip install psycopg2-binary"),
    "pymysql": ("pymysql", "pip install pymysql"),
    "mysqldb": ("MySQLdb", "pip install mysqlclient, or use mysql+pymysql:// with pip install pymysql"),
    "asyncpg": ("asyncpg", "use postgresql:// (psycopg 3): pip install 'hwprune[postgres]'"),
}


def mask_url(url: str) -> str:
    """``url`` with its password (and any ``password=`` query value) replaced by ``***``."""
    out = re.sub(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^:/@?#]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"(?i)((?:password|pwd)=)[^&;\s]*", r"\1***", out)


def _secrets(url: str) -> list[str]:
    from urllib.parse import unquote

    found = re.findall(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^:/@?#]*:([^@/]*)@", url)
    found += re.findall(r"(?i)(?:password|pwd)=([^&;\s]*)", url)
    out = set()
    for s in found:
        if s:
            out |= {s, unquote(s)}
    return sorted(out, key=len, reverse=True)


def scrub(text: str, url: str | None) -> str:
    """``text`` with ``url`` masked and its password removed wherever it appears."""
    if not url:
        return text
    text = text.replace(url, mask_url(url))
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class StorageSpec:
    """A resolved ``--storage``: ``url`` (secret-bearing: never print it) and its kind."""

    url: str
    kind: str  # "rdb" or "journal"

    @property
    def masked(self) -> str:
        return mask_url(self.url) if self.kind == "rdb" else self.url

    @property
    def journal_path(self) -> Path:
        return Path(self.url)

    def scrub(self, text: str) -> str:
        return scrub(text, self.url) if self.kind == "rdb" else text

    def driver_check(self) -> None:
        """One line with the install command when the URL's database driver is missing."""
        if self.kind != "rdb":
            return
        from sqlalchemy.engine import make_url

        try:
            dialect = make_url(self.url).get_dialect()
        except Exception as exc:  # unknown dialect, malformed URL
            raise ConfigError(f"cannot read storage URL '{self.masked}': {self.scrub(str(exc))}",
                              "use e.g. postgresql://user:pw@host/db or sqlite:///study.db") from None
        module, command = _DRIVERS.get(dialect.driver, (None, None))
        if module and importlib.util.find_spec(module) is None:
            raise MissingDependencyError(
                f"storage '{self.masked}' needs the {dialect.name} driver '{module}', which is "
                f"not installed", command)


def resolve_storage(value: str | os.PathLike | None,
                    environ: Mapping[str, str] | None = None) -> StorageSpec | None:
    """``--storage`` as a :class:`StorageSpec` (None: no shared storage).

    ``env:NAME`` reads the URL from ``environ[NAME]``; a path ending in ``.journal`` is a
    journal file; anything with ``://`` is an RDB URL.
    """
    if value is None or str(value) == "":
        return None
    value = str(value)
    env = os.environ if environ is None else environ
    if value.startswith("env:"):
        name = value[4:]
        if not name or name not in env or not env[name]:
            raise ConfigError(f"--storage {value}: environment variable '{name}' is not set",
                              f"export {name or 'NAME'}=postgresql://user:pw@host/db")
        value = env[name]
    if "://" in value:
        return StorageSpec(value, "rdb")
    if value.endswith(".journal"):
        return StorageSpec(str(Path(value).expanduser().resolve()), "journal")
    raise ConfigError(f"storage must be an RDB URL (postgresql://user:pw@host/db, sqlite:///study.db) "
                      f"or a journal file ending in .journal, got '{mask_url(value)}'")


# --------------------------------------------------------------------------- journal heartbeats

class HeartbeatJournalStorage(optuna.storages.JournalStorage, BaseHeartbeat):
    """Optuna's journal storage plus heartbeats, for processes on one machine.

    Optuna 5 implements heartbeats for RDB storages only. Here each running trial's
    heartbeat is the modification time of ``JOURNAL.heartbeats/TRIAL_ID`` (touched every
    ``heartbeat_interval`` seconds by Optuna's heartbeat thread); a RUNNING trial whose
    file is older than ``grace_period`` is stale. Optuna's ``optimize`` then fails it and
    calls the stale-trial callback exactly as for an RDB.
    """

    def __init__(self, path: Path, heartbeat_interval: int, grace_period: int,
                 callback: Callable[[optuna.Study, FrozenTrial], None] | None) -> None:
        from optuna.storages.journal import JournalFileBackend

        super().__init__(JournalFileBackend(str(path)))
        self._beats = Path(str(path) + ".heartbeats")
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self._callback = callback

    def record_heartbeat(self, trial_id: int) -> None:
        self._beats.mkdir(exist_ok=True)
        (self._beats / str(trial_id)).touch()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now, stale = time.time(), []
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            try:
                beat = (self._beats / str(t._trial_id)).stat().st_mtime
            except FileNotFoundError:
                continue  # never beat: not started by a heartbeat-enabled worker
            if now - beat > self.grace_period:
                stale.append(t._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._callback


def open_storage(spec: StorageSpec, *, heartbeat_s: int = HEARTBEAT_S,
                 grace_period_s: int = GRACE_PERIOD_S) -> Any:
    """An Optuna storage for ``spec`` with heartbeats and the retry-on-stale callback.

    Errors (missing driver, unreachable server, wrong credentials) are one-line
    :class:`ConfigError` s with the password masked.
    """
    if heartbeat_s < 1 or grace_period_s < 1:
        raise ConfigError(f"heartbeat and grace period must be at least 1 s, got {heartbeat_s} "
                          f"and {grace_period_s}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3)
    if spec.kind == "journal":
        spec.journal_path.parent.mkdir(parents=True, exist_ok=True)
        return HeartbeatJournalStorage(spec.journal_path, heartbeat_s, grace_period_s, retry)
    spec.driver_check()
    for attempt in range(5):
        try:
            return _rdb(spec, heartbeat_s, grace_period_s, retry)
        except ImportError as exc:  # a driver the table above does not know
            raise MissingDependencyError(f"storage '{spec.masked}': {spec.scrub(str(exc))}",
                                         "install the database driver for this URL") from None
        except Exception as exc:  # sqlalchemy errors: bad URL, unreachable server, credentials
            if _schema_race(exc) and attempt < 4:
                time.sleep(0.2 + 0.3 * attempt)  # another worker is creating Optuna's tables
                continue
            raise ConfigError(f"cannot open storage '{spec.masked}': {_first_line(spec, exc)}",
                              "check the host, port, user and password, and that the database exists"
                              ) from None
    raise AssertionError("unreachable")


def _rdb(spec: StorageSpec, heartbeat_s: int, grace_period_s: int, retry: Any) -> Any:
    with warnings.catch_warnings():
        # heartbeats are "experimental" since Optuna 2.8; we rely on them knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            spec.url, heartbeat_interval=heartbeat_s, grace_period=grace_period_s,
            heartbeat_stale_trial_callback=retry, engine_kwargs=_engine_kwargs(spec.url))


def _schema_race(exc: BaseException) -> bool:
    """Two workers creating Optuna's tables at once: one of them loses a unique constraint."""
    text = f"{type(exc).__name__} {type(getattr(exc, 'orig', None)).__name__} {exc}"
    return any(s in text for s in ("IntegrityError", "UniqueViolation", "already exists",
                                   "database is locked"))


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    return {}


def _first_line(spec: StorageSpec, exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    # psycopg puts the reason after "connection ... failed:" on the first line
    text = lines[0] if lines else ""
    return spec.scrub(f"{type(orig).__name__}: {text}")
