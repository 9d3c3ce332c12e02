"""Latency and memory budgets: parsing the user's text, and checking a budget is reachable.

A latency budget is an absolute time (``20ms``, ``1.5ms``, ``0.02s``) or a share of the
dense model's *predicted* latency on the target device (``50%``). A memory budget is a
size (``512KB``, ``4MB``, ``1.5GB``, ``4MiB``) or a share of the dense model's memory
(``50%``); memory means weights plus peak activations (``Cost.memory_bytes``).

Sizes use SI units (``KB`` = 1000 bytes, ``MB`` = 10**6) and IEC units for powers of two
(``KiB`` = 1024, ``MiB`` = 2**20), so ``4MB`` means exactly what a disk or a spec sheet
means by it. The parsed byte count is echoed in every report.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from hwprune.errors import BudgetError

__all__ = ["Budget", "parse_latency_budget", "parse_memory_budget", "check_reachable",
           "format_bytes"]

_LATENCY_FORMS = "give a number with a unit and no space: 20ms, 1.5ms, 0.02s, or 50% of the dense model's latency"
_MEMORY_FORMS = ("give a number with a unit and no space: 512KB, 4MB, 1.5GB, 4MiB, or 50% "
                 "of the dense model's memory (weights + peak activations)")

# A number: digits with an optional fraction, or a leading-dot fraction. No sign, no
# exponent, no inner spaces: "20 ms" and "-5ms" are rejected with the valid forms.
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_LATENCY_RE = re.compile(_NUMBER + r"(ms|s|%)", re.IGNORECASE)
_MEMORY_RE = re.compile(_NUMBER + r"(b|kb|mb|gb|kib|mib|gib|%)", re.IGNORECASE)
_MEMORY_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9,
                 "kib": 2**10, "mib": 2**20, "gib": 2**30}


def format_bytes(n: float) -> str:
    """``3204136`` -> ``'3.20MB'`` (SI, as the budget parser reads it back)."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{int(n)}B"


def _parse(text: str, what: str, regex: re.Pattern, forms: str, units: dict[str, float],
           dense: float | None, example: str) -> float:
    """The shared grammar of both budgets: ``<number><unit>`` or ``<number>%`` of ``dense``."""
    raw = str(text)
    m = regex.fullmatch(raw.strip())
    if m is None:
        if regex.fullmatch(raw.strip().lstrip("-")):
            raise BudgetError(f"{what} budget must be positive, got '{raw}'", forms)
        raise BudgetError(f"{what} budget must be a number with a unit, got '{raw}'", forms)
    value, unit = float(m.group(1)), m.group(2).lower()
    if unit == "%":
        if not 0.0 < value <= 100.0:
            raise BudgetError(f"{what} budget percentage must be in (0%, 100%], got '{raw}'", forms)
        if dense is None or not dense > 0:
            raise BudgetError(f"{what} budget '{raw}' is relative, but the dense {what} is unknown",
                              f"give an absolute budget such as {example}")
        return dense * value / 100.0
    amount = value * units[unit]
    if not amount > 0 or not math.isfinite(amount):
        raise BudgetError(f"{what} budget must be positive, got '{raw}'", forms)
    return amount


def parse_latency_budget(text: str, dense_ms: float | None = None) -> float:
    """Parse a latency budget into milliseconds.

    ``text`` is ``<number>ms``, ``<number>s`` or ``<number>%``; the percentage is of
    ``dense_ms``, the dense model's predicted latency (ms). Raises :class:`BudgetError`
    for anything else (no unit, a space, a sign, zero, over 100%).

    >>> parse_latency_budget("20ms"), parse_latency_budget("0.02s"), parse_latency_budget("50%", 0.5)
    (20.0, 20.0, 0.25)
    """
    return _parse(text, "latency", _LATENCY_RE, _LATENCY_FORMS, {"ms": 1.0, "s": 1000.0},
                  dense_ms, "20ms")


def parse_memory_budget(text: str, dense_bytes: int | None = None) -> int:
    """Parse a memory budget (weights + peak activations) into bytes.

    ``text`` is ``<number><unit>`` with unit B, KB, MB, GB (powers of 1000), KiB, MiB,
    GiB (powers of 1024), case-insensitive, or ``<number>%`` of ``dense_bytes``.

    >>> parse_memory_budget("4MB"), parse_memory_budget("512KB"), parse_memory_budget("1MiB")
    (4000000, 512000, 1048576)
    >>> parse_memory_budget("50%", 3_000_000)
    1500000
    """
    nbytes = int(_parse(text, "memory", _MEMORY_RE, _MEMORY_FORMS, _MEMORY_UNITS, dense_bytes, "4MB"))
    if nbytes <= 0:
        raise BudgetError(f"memory budget must be positive, got '{text}'", _MEMORY_FORMS)
    return nbytes


@dataclass(frozen=True)
class Budget:
    """What a search must meet. ``None`` means that resource is not constrained.

    ``latency_ms`` is compared with the *predicted* latency of a plan; ``memory_bytes``
    with its analytic weights + peak activation bytes.
    """

    latency_ms: float | None = None
    memory_bytes: int | None = None
    latency_text: str | None = None
    memory_text: str | None = None

    def fits(self, predicted_ms: float, memory_bytes: int) -> bool:
        return ((self.latency_ms is None or predicted_ms <= self.latency_ms)
                and (self.memory_bytes is None or memory_bytes <= self.memory_bytes))

    def violations(self, predicted_ms: float, memory_bytes: int) -> dict[str, float]:
        """Relative excess per constrained resource: ``<= 0`` is within budget.

        Relative (``value / budget - 1``) rather than absolute so that milliseconds and
        bytes are on one scale: TPE ranks infeasible trials by the *sum* of violations.
        """
        out: dict[str, float] = {}
        if self.latency_ms is not None:
            out["latency"] = predicted_ms / self.latency_ms - 1.0
        if self.memory_bytes is not None:
            out["memory"] = memory_bytes / self.memory_bytes - 1.0
        return out

    def describe(self) -> str:
        parts = []
        if self.latency_ms is not None:
            parts.append(f"latency <= {self.latency_ms:.4g}ms ({self.latency_text})")
        if self.memory_bytes is not None:
            parts.append(f"memory <= {format_bytes(self.memory_bytes)} ({self.memory_text})")
        return ", ".join(parts) or "no budget"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def parse(cls, latency: str | None, memory: str | None, dense_ms: float | None,
              dense_memory_bytes: int | None) -> "Budget":
        """Parse both budget texts (either may be ``None``)."""
        return cls(parse_latency_budget(latency, dense_ms) if latency is not None else None,
                   parse_memory_budget(memory, dense_memory_bytes) if memory is not None else None,
                   latency, memory)


def check_reachable(budget: Budget, floor_ms: float, floor_memory_bytes: int,
                    model: str, device: str) -> None:
    """Raise :class:`BudgetError` when even the smallest plan misses ``budget``.

    ``floor_ms`` and ``floor_memory_bytes`` are the predicted latency and memory of the
    space's smallest plan (every group at its floor), the cheapest point it can reach.
    """
    problems = []
    if budget.latency_ms is not None and floor_ms > budget.latency_ms:
        problems.append(f"latency budget {budget.latency_text} ({budget.latency_ms:.4g}ms) is below "
                        f"the fastest reachable {floor_ms:.4g}ms")
    if budget.memory_bytes is not None and floor_memory_bytes > budget.memory_bytes:
        problems.append(f"memory budget {budget.memory_text} ({budget.memory_bytes} bytes) is below "
                        f"the smallest reachable {format_bytes(floor_memory_bytes)} "
                        f"({floor_memory_bytes} bytes)")
    if problems:
        raise BudgetError("; ".join(problems) + f" (every group at its floor) for {model} on {device}",
                          "raise the budget")
