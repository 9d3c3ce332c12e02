"""The ``hwprune`` command line."""
from __future__ import annotations

from hwprune.cli._main import main

__all__ = ["main"]
