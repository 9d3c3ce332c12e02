"""hwprune: hardware-aware channel pruning driven by measured latency tables."""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
