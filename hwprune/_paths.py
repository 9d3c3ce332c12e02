"""Where data files live: the checkout's top-level folders, or the installed copies."""
from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    checkout = _PKG.parent / name
    if checkout.is_dir():
        return checkout
    return _PKG / "_data" / name  # wheel installs copy the folders here


def profiles_dir() -> Path:
    return _data_dir("device_profiles")


def shipped_tables_dir() -> Path:
    return _data_dir("latency_tables")


def tables_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The table folder that reads and writes go to.

    Order: ``--tables DIR``, ``$HWPRUNE_TABLES``, then the checkout's (or installed)
    ``latency_tables/``.
    """
    if explicit:
        return Path(explicit)
    env = os.environ.get("HWPRUNE_TABLES")
    if env:
        return Path(env)
    return shipped_tables_dir()
