"""Budget parsing and the reachability check (pure functions, milliseconds)."""
from __future__ import annotations

import pytest

from hwprune.errors import BudgetError
from hwprune.search import Budget, check_reachable, parse_latency_budget, parse_memory_budget

DENSE_MS = 0.5


@pytest.mark.parametrize("text, ms", [
    ("20ms", 20.0), ("1.5ms", 1.5), ("0.02s", 20.0), ("50%", 0.25), ("100%", 0.5),
    (".5ms", 0.5), ("2MS", 2.0), (" 3ms ", 3.0),
])
def test_latency_budget_forms(text: str, ms: float) -> None:
    assert parse_latency_budget(text, DENSE_MS) == pytest.approx(ms)


@pytest.mark.parametrize("text, rule", [
    ("20", "number with a unit"), ("20 ms", "number with a unit"), ("-5ms", "must be positive"),
    ("fast", "number with a unit"), ("0ms", "must be positive"), ("0s", "must be positive"),
    ("150%", "(0%, 100%]"), ("0%", "(0%, 100%]"), ("", "number with a unit"),
    ("20us", "number with a unit"), ("1e3ms", "number with a unit"),
])
def test_latency_budget_rejects(text: str, rule: str) -> None:
    with pytest.raises(BudgetError) as err:
        parse_latency_budget(text, DENSE_MS)
    msg = str(err.value)
    assert rule in msg
    assert f"'{text}'" in msg                       # echoes the value
    assert "20ms" in msg and "0.02s" in msg and "50%" in msg   # shows the valid forms
    assert "\n" not in msg
    assert isinstance(err.value, ValueError)


def test_relative_latency_needs_dense() -> None:
    with pytest.raises(BudgetError, match="relative"):
        parse_latency_budget("50%", None)


@pytest.mark.parametrize("text, nbytes", [
    ("4MB", 4_000_000), ("512KB", 512_000), ("1.5GB", 1_500_000_000), ("4mb", 4_000_000),
    ("1MiB", 1_048_576), ("2KiB", 2048), ("1000B", 1000), ("50%", 1_500_000),
])
def test_memory_budget_forms(text: str, nbytes: int) -> None:
    assert parse_memory_budget(text, 3_000_000) == nbytes


@pytest.mark.parametrize("text", ["4", "4 MB", "-1MB", "0KB", "lots", "150%", "0%", "4TB"])
def test_memory_budget_rejects(text: str) -> None:
    with pytest.raises(BudgetError) as err:
        parse_memory_budget(text, 3_000_000)
    msg = str(err.value)
    assert f"'{text}'" in msg and "4MB" in msg and "512KB" in msg


def test_budget_fits_and_violations() -> None:
    b = Budget.parse("50%", "2MB", DENSE_MS, 4_000_000)
    assert b.latency_ms == pytest.approx(0.25) and b.memory_bytes == 2_000_000
    assert b.fits(0.25, 2_000_000)
    assert not b.fits(0.2501, 1_000)
    assert not b.fits(0.1, 2_000_001)
    v = b.violations(0.5, 1_000_000)
    assert v["latency"] == pytest.approx(1.0) and v["memory"] == pytest.approx(-0.5)
    only_memory = Budget.parse(None, "1MB", None, None)
    assert only_memory.fits(1e9, 999_999) and set(only_memory.violations(1, 1)) == {"memory"}


def test_unreachable_budget_names_the_floor() -> None:
    b = Budget.parse("0.1ms", None, DENSE_MS, None)
    with pytest.raises(BudgetError) as err:
        check_reachable(b, floor_ms=0.42, floor_memory_bytes=100_000, model="demo", device="host")
    msg = str(err.value)
    assert "0.1ms" in msg and "fastest reachable 0.42ms" in msg
    assert "every group at its floor" in msg and "demo on host" in msg
    check_reachable(Budget.parse("0.42ms", None, None, None), 0.42, 1, "demo", "host")  # exactly fits


def test_unreachable_memory_budget() -> None:
    b = Budget.parse(None, "10KB", None, None)
    with pytest.raises(BudgetError, match="smallest reachable 50.00KB"):
        check_reachable(b, 0.1, 50_000, "demo", "host")
