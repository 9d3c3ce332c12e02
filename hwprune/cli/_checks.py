"""Checks the commands make on their arguments before any expensive work (each failure
is one :class:`~hwprune.errors.ConfigError` line)."""
from __future__ import annotations

import argparse
from pathlib import Path

from hwprune.errors import ConfigError

__all__ = ["check_tables_to_read", "host_port"]


def check_tables_to_read(args: argparse.Namespace) -> None:
    """``--tables DIR`` (read): a folder, when it exists."""
    if getattr(args, "tables", None) and Path(args.tables).exists() and not Path(args.tables).is_dir():
        raise ConfigError(f"--tables '{args.tables}' is a file, not a folder of latency tables",
                          "pass the folder that holds DEVICE.csv.gz and DEVICE.json")


def host_port(text: str) -> str:
    """An argparse type: ``HOST:PORT`` with a port in 1..65535."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT with a port in 1..65535, got {text!r}")
    return text
