"""Has this machine changed speed since its table was built?

A table is right when it is used under the conditions it was built in. A cloud VM with
busy neighbours, a phone that throttles when warm or a laptop on battery runs everything
slower (or faster) for a while, and every prediction is off by that factor. So each build
keeps a *reference model* (one of its own calibration models, written next to the table
as ``DEVICE.ref-MODEL.onnx``) with the latency it had during the build and the spread of
its calibration rounds. Before predicting, :func:`measure_drift` re-times it (about a
second, the calibration's protocol) and reports the ratio; beyond :data:`DRIFT_THRESHOLD`
the predictor is rescaled by it unless the caller keeps the raw values.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwprune._io import atomic_write
from hwprune.latency._records import CalibrationPoint
from hwprune.latency._table import LatencyTable

__all__ = ["DRIFT_THRESHOLD", "Drift", "save_reference", "reference_for", "measure_drift"]

DRIFT_THRESHOLD = 0.05
#: the calibration model nearest this long is the reference: long enough that what slows
#: the machine (a neighbour's time slices, lower clocks) lands in its runs as it does in
#: a real model's, short enough to re-time in about a second
REFERENCE_MS = 20.0
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

    @property
    def ratio(self) -> float:
        return self.now_ms / self.built_ms

    @property
    def significant(self) -> bool:
        """More than 5% off the build's latency, and outside the range the build's own
        rounds spanned: on a machine whose speed swings from one minute to the next (a
        shared VM), a reading inside that swing is the noise the table already averaged
        over, not a change of machine."""
        if abs(self.ratio - 1.0) <= DRIFT_THRESHOLD:
            return False
        low, high = self.built_low_ms, self.built_high_ms
        return low is None or high is None or not low <= self.now_ms <= high

    def describe(self, device: str) -> str:
        way = "slower" if self.ratio > 1 else "faster"
        return (f"this machine runs the '{device}' table's reference model {self.ratio:.2f}x {way} than when the "
                f"table was built ({self.now_ms:.3f} vs {self.built_ms:.3f} ms)")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "now_ms": self.now_ms, "built_ms": self.built_ms,
                "built_range_ms": [self.built_low_ms, self.built_high_ms],
                "ratio": round(self.ratio, 4), "significant": self.significant}


def _file(table: LatencyTable, model_key: str) -> Path:
    digest = hashlib.sha256(model_key.encode()).hexdigest()[:12]
    return table.directory / f"{table.device}.ref-{digest}.onnx"


def save_reference(table: LatencyTable, model_key: str, points: list[CalibrationPoint],
                   onnx_by_plan: dict[str, bytes]) -> dict[str, Any] | None:
    """Choose the model's reference among its calibration points (the one nearest
    :data:`REFERENCE_MS`), write its ONNX beside the table and record it in the table's
    metadata; returns the record."""
    mine = [p for p in points if p.model == model_key and p.plan in onnx_by_plan]
    if not mine or table.directory is None:
        return None
    point = min(mine, key=lambda p: abs(math.log(max(p.measured_ms, 1e-6) / REFERENCE_MS)))
    path = _file(table, model_key)
    atomic_write(path, onnx_by_plan[point.plan])
    low = point.min_ms or point.measured_ms
    spread = ((point.max_ms - low) / point.measured_ms) if point.max_ms else 0.0
    record = {"model": model_key, "plan": point.plan, "file": path.name, "measured_ms": point.measured_ms,
              "min_ms": low, "max_ms": point.max_ms, "spread": round(spread, 4),
              "noisy_build": spread > NOISY_BUILD, "date": point.date}
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
    """Re-time the reference model (the calibration's protocol, but the median round: how
    fast the machine runs now, not in its best second); None without one."""
    record = reference_for(table, model_key)
    if record is None:
        return None
    onnx = (table.directory / record["file"]).read_bytes()
    # the machine as it runs now: the median of 5 short rounds (a slow spell counts)
    now = runtime.time_sessions([runtime.session(onnx)], rounds=5, seconds=seconds, statistic="median")[0]
    low, high = record.get("min_ms"), record.get("max_ms")
    return Drift(record["model"], now, float(record["measured_ms"]), float(low) if low else None,
                 float(high) if high else None)
