"""The model zoo and user models.

A model is named by a *spec*: a zoo name (``resnet18``), a file and factory
(``path/to/net.py:build``) or an importable module and factory (``pkg.nets:build``).
"""
from __future__ import annotations

from hwprune.models._zoo import (
    ZOO,
    LoadedModel,
    ZooEntry,
    load_model,
    parse_input_shape,
)

__all__ = ["ZOO", "ZooEntry", "LoadedModel", "load_model", "parse_input_shape"]
