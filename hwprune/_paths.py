"""Where files live.

Shipped data (device profiles, latency tables) is read-only: the checkout's top-level
folders, or the copies installed with the package. Everything a user's work produces
(their latency tables, search runs, TVM tuning records) goes under one work folder:
``--work-dir``, ``$HWPRUNE_WORK_DIR`` or ``./hwprune-work``, with ``tables/``, ``runs/``
and ``tuning-db/`` inside. hwprune never writes into the shipped folders.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["profiles_dir", "shipped_tables_dir", "work_dir", "tables_dir", "runs_dir", "tuning_db_dir",
           "resolve_table"]

_PKG = Path(__file__).resolve().parent
DEFAULT_WORK_DIR = "hwprune-work"


def _data_dir(name: str) -> Path:
    checkout = _PKG.parent / name
    if checkout.is_dir() and (_PKG.parent / "pyproject.toml").is_file():
        return checkout
    return _PKG / "_data" / name  # installed: the wheel carries copies here


def profiles_dir() -> Path:
    return _data_dir("device_profiles")


def shipped_tables_dir() -> Path:
    return _data_dir("latency_tables")


def work_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The user's work folder: ``explicit``, ``$HWPRUNE_WORK_DIR``, or ``./hwprune-work``."""
    return Path(explicit or os.environ.get("HWPRUNE_WORK_DIR") or DEFAULT_WORK_DIR)


def tables_dir(explicit: str | os.PathLike | None = None, work: str | os.PathLike | None = None) -> Path:
    """The folder the user's tables are written to: ``--tables DIR``, ``$HWPRUNE_TABLES``,
    then ``WORK_DIR/tables``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("HWPRUNE_TABLES")
    return Path(env) if env else work_dir(work) / "tables"


def runs_dir(work: str | os.PathLike | None = None) -> Path:
    return work_dir(work) / "runs"


def tuning_db_dir(device: str, work: str | os.PathLike | None = None) -> Path:
    return work_dir(work) / "tuning-db" / device


def resolve_table(device: str, explicit: str | os.PathLike | None = None,
                  work: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The folder to *read* ``device``'s table from, and which it is: ``"yours"`` (the
    user's folder holds one) or ``"shipped"`` (it does not, and hwprune ships one).
    With neither, the user's folder (where ``profile`` will create it)."""
    mine = tables_dir(explicit, work)
    if (mine / f"{device}.json").is_file() or explicit:
        return mine, "yours"
    shipped = shipped_tables_dir()
    if (shipped / f"{device}.json").is_file():
        return shipped, "shipped"
    return mine, "yours"
