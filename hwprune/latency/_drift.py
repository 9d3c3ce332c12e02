"""Has this machine changed speed since its table was built?

A table is right when it is used under the conditions it was built in. A cloud VM with
busy neighbours, a phone that throttles when warm or a laptop on battery runs everything
slower (or faster) for a while, and every prediction is off by that factor. So each build
keeps *reference models* (one or two of its own calibration models: one of about
:data:`REFERENCE_MS` and the longest up to :data:`REFERENCE_MAX_MS`, written next to the
table as ``DEVICE.ref-MODEL[-i].onnx``) with the latency each had during the build and
the spread of its calibration rounds. Before predicting, :func:`measure_drift`
re-times them (a few seconds, the calibration's protocol, interleaved) and reports the
ratio; beyond :data:`DRIFT_THRESHOLD` the predictor is rescaled by it unless the caller
keeps the raw values.

Noise slows a machine down; it never speeds one up. So the two directions are judged
apart (:attr:`Drift.significant`): a machine now slower than the build counts only beyond
the slowest round the build saw (a shared VM's swings are noise the table averaged over),
while one now faster than the table's own idle-device estimate (the lower quartile of its
rounds, what the predictions are calibrated to) shows that the build ran in a slow spell,
and predictions are scaled by the re-timing against that estimate (:attr:`Drift.factor`).

A slowed machine does not slow every model alike: under a neighbour's time slices a 21 ms
model ran 1.9x and a 57 ms one 2.24x as long on one 2-core VM. So a prediction longer than
the main reference is scaled by the two references' ratio interpolated at its length
(:meth:`Drift.ratio_at`); shorter ones take the main reference's.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from hwprune._io import atomic_write
from hwprune.latency._records import CalibrationPoint
from hwprune.latency._table import LatencyTable

__all__ = ["DRIFT_THRESHOLD", "Drift", "save_reference", "reference_for", "measure_drift"]

DRIFT_THRESHOLD = 0.05
#: the calibration model nearest this long is the main reference: long enough that what
#: slows the machine (a neighbour's time slices, lower clocks) lands in its runs as it does
#: in a real model's, short enough to re-time in about a second
REFERENCE_MS = 20.0
#: the longest reference: models beyond it take its ratio (re-timing stays a few seconds)
REFERENCE_MAX_MS = 3 * REFERENCE_MS
NOISY_BUILD = 0.05       # calibration rounds of the reference spread more than this: the build is flagged


@dataclass(frozen=True)
class Drift:
    """``ratio`` = the reference model's latency now / during the build."""

    model: str
    now_ms: float
    built_ms: float
    #: the lowest and highest round the build itself measured (None: not recorded)
    built_low_ms: float | None = None
    built_high_ms: float | None = None
    #: the other references, (built_ms, now_ms) or (built_ms, now_ms, idle_ms) each: the
    #: ratio by model length
    others: tuple[tuple[float, ...], ...] = ()
    #: the build's idle-device estimate of the reference (the lower quartile of its rounds,
    #: what the table's predictions are calibrated to; None: not recorded)
    built_idle_ms: float | None = None

    @property
    def ratio(self) -> float:
        return self.now_ms / self.built_ms

    @property
    def faster(self) -> bool:
        """Faster now than the build's idle-device estimate by more than 5%."""
        return self.built_idle_ms is not None and self.now_ms < (1.0 - DRIFT_THRESHOLD) * self.built_idle_ms

    @property
    def factor(self) -> float:
        """What predictions of the main reference's length are scaled by: the re-timing
        against the build's median round, or against its idle-device estimate when the
        machine now runs faster than that (:attr:`faster`)."""
        return self.ratio_at(self.built_ms)

    def _points(self) -> list[tuple[float, float]]:
        """(built_ms, factor) of every reference, shortest first."""
        refs = [(self.built_ms, self.now_ms, self.built_idle_ms), *self.others]
        points = set()
        for built, now, *idle in refs:
            basis = idle[0] if self.faster and idle and idle[0] else built
            points.add((built, now / basis))
        return sorted(points)

    def ratio_at(self, ms: float) -> float:
        """The factor for a model that took ``ms`` during the build: interpolated in log
        length between the references, the nearest one's beyond them."""
        pts = self._points()
        if ms <= pts[0][0]:
            return pts[0][1]
        for (x0, r0), (x1, r1) in zip(pts, pts[1:]):
            if ms <= x1:
                t = math.log(ms / x0) / math.log(x1 / x0) if x1 > x0 else 1.0
                return r0 + t * (r1 - r0)
        return pts[-1][1]

    @property
    def significant(self) -> bool:
        """Slower: more than 5% above the build's median round and beyond its slowest
        round (on a machine whose speed swings from one minute to the next, a shared VM, a
        reading inside that swing is the noise the table already averaged over). Faster:
        more than 5% below the build's idle-device estimate (:attr:`faster`; tables that
        did not record it: below the build's fastest round)."""
        if self.faster:
            return True
        if abs(self.ratio - 1.0) <= DRIFT_THRESHOLD or (self.built_idle_ms is not None and self.ratio < 1.0):
            return False
        low, high = self.built_low_ms, self.built_high_ms
        return low is None or high is None or not low <= self.now_ms <= high

    def factors(self) -> str:
        """The rescale factors as text: '1.90', or '1.85-2.24 by model length'."""
        ratios = [r for _, r in self._points()]
        lo, hi = min(ratios), max(ratios)
        return f"{self.factor:.2f}" if hi - lo < 0.005 else f"{lo:.2f}-{hi:.2f} by model length"

    def describe(self, device: str) -> str:
        way = "slower" if self.ratio > 1 else "faster"
        text = (f"this machine runs the '{device}' table's reference model {self.ratio:.2f}x {way} than when the "
                f"table was built ({self.now_ms:.3f} vs {self.built_ms:.3f} ms")
        if self.others:
            pts = self._points()
            ratios = [r for _, r in pts]
            text += (f"; {min(ratios):.2f}-{max(ratios):.2f}x across references of "
                     f"{pts[0][0]:.3g}-{pts[-1][0]:.3g} ms")
        return text + ")"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "now_ms": self.now_ms, "built_ms": self.built_ms,
                "built_range_ms": [self.built_low_ms, self.built_high_ms], "built_idle_ms": self.built_idle_ms,
                "ratio": round(self.ratio, 4), "factor": round(self.factor, 4), "significant": self.significant,
                "others": [{"built_ms": o[0], "now_ms": o[1], "ratio": round(o[1] / o[0], 4)} for o in self.others]}


def _file(table: LatencyTable, model_key: str, index: int = 0) -> Path:
    digest = hashlib.sha256(model_key.encode()).hexdigest()[:12]
    return table.directory / f"{table.device}.ref-{digest}{f'-{index}' if index else ''}.onnx"


def _log_gap(p: CalibrationPoint, ms: float) -> float:
    return abs(math.log(max(p.measured_ms, 1e-6) / ms))


def _references(points: Sequence[CalibrationPoint]) -> list[CalibrationPoint]:
    """The main reference (nearest :data:`REFERENCE_MS`), then the longest point up to
    :data:`REFERENCE_MAX_MS` when it is at least 1.5x as long. No shorter one: under a
    neighbour's time slices (3 ms or so) a model shorter than a slice slows by anything
    from 1x to 3x depending on how its runs fall between them (measured: 2.03 ms 2.95x,
    4.7 ms 1.78x, 14 ms 1.92x), so shorter models take the main reference's ratio."""
    main = min(points, key=lambda p: _log_gap(p, REFERENCE_MS))
    under = [p for p in points if p.measured_ms <= REFERENCE_MAX_MS]
    long = max(under, key=lambda p: p.measured_ms) if under else main
    return [main] + ([long] if long.measured_ms >= 1.5 * main.measured_ms else [])


def save_reference(table: LatencyTable, model_key: str, points: list[CalibrationPoint],
                   onnx_by_plan: dict[str, bytes]) -> dict[str, Any] | None:
    """Choose the model's references among its calibration points (see
    :func:`_references`), write their ONNX beside the table and record them in the
    table's metadata; returns the record."""
    mine = [p for p in points if p.model == model_key and p.plan in onnx_by_plan]
    if not mine or table.directory is None:
        return None
    entries = []
    for i, point in enumerate(_references(mine)):
        path = _file(table, model_key, i)
        atomic_write(path, onnx_by_plan[point.plan])
        # the median round: what measure_drift's median of its rounds is compared with
        built = point.median_ms or point.measured_ms
        entries.append({"plan": point.plan, "file": path.name, "measured_ms": built, "idle_ms": point.measured_ms,
                        "min_ms": point.min_ms or built, "max_ms": point.max_ms})
    main = entries[0]
    spread = ((main["max_ms"] - main["min_ms"]) / main["measured_ms"]) if main["max_ms"] else 0.0
    record = {"model": model_key, **main, "spread": round(spread, 4), "noisy_build": spread > NOISY_BUILD,
              "date": max((p.date or "" for p in mine), default="") or None, "others": entries[1:]}
    table.meta.reference[model_key] = record
    return record


def reference_for(table: LatencyTable, model_key: str | None = None) -> dict[str, Any] | None:
    """The reference of ``model_key`` (or of the table's latest build) whose file exists."""
    refs = table.meta.reference
    if model_key is not None:
        record = refs.get(model_key)
    else:
        record = max(refs.values(), key=lambda r: str(r.get("date") or ""), default=None)
    if record is None or table.directory is None or not (table.directory / record["file"]).is_file():
        return None
    return record


def measure_drift(table: LatencyTable, runtime: Any, model_key: str | None = None,
                  seconds: float = 1.0) -> Drift | None:
    """Re-time the references (the calibration's protocol, interleaved, but the median
    round: how fast the machine runs now, not in its best second); None without one.
    ``seconds``: timed seconds of each reference, over the 5 rounds."""
    record = reference_for(table, model_key)
    if record is None:
        return None
    others = [o for o in record.get("others", []) if (table.directory / o["file"]).is_file()]
    refs = [record, *others]
    sessions = [runtime.session((table.directory / r["file"]).read_bytes()) for r in refs]
    # the machine as it runs now: the median of 5 short rounds (a slow spell counts)
    now = runtime.time_sessions(sessions, rounds=5, seconds=seconds, statistic="median")
    low, high = record.get("min_ms"), record.get("max_ms")
    idle = [_idle_ms(table, model_key or record["model"], r) for r in refs]
    return Drift(record["model"], now[0], float(record["measured_ms"]), float(low) if low else None,
                 float(high) if high else None,
                 tuple((float(r["measured_ms"]), t, i) for r, t, i in zip(others, now[1:], idle[1:])), idle[0])


def _idle_ms(table: LatencyTable, model_key: str, ref: dict[str, Any]) -> float | None:
    """A reference's idle-device estimate: recorded beside it, or (tables from before it
    was) its calibration point's ``measured_ms``; None when neither is there."""
    if ref.get("idle_ms"):
        return float(ref["idle_ms"])
    point = next((p for p in table.meta.calibration if p.model == model_key and p.plan == ref.get("plan")), None)
    return float(point.measured_ms) if point is not None and point.measured_ms > 0 else None
