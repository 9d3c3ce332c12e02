"""Predicting a plan's latency from a table: a sum of kernel lookups, then calibration.

Off its own anchors a model is predicted on its own grid (:func:`~hwprune.latency._grid.
own_grid_values`, with the table's recorded ``channel_block``); the sum is then mapped
through the model's end-to-end calibration points (:func:`fit_calibration`).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from hwprune.errors import ConfigError, MissingKernelsError, PlanError, TableError
from hwprune.latency._grid import needed_keys, own_grid_values
from hwprune.latency._records import CalibrationPoint
from hwprune.latency._table import LatencyTable
from hwprune.pruning import Analysis, PruningPlan

__all__ = ["LatencyPredictor", "KernelTime", "fit_calibration"]


@dataclass(frozen=True)
class KernelTime:
    name: str
    key: str
    latency_ms: float
    source: str


def fit_calibration(points: list[tuple[float, float]]) -> tuple[float, float]:
    """``measured = scale * kernel_sum + offset`` (ms), least squares on *relative* error.

    The offset may be negative (kernels timed alone carry a little overhead the whole
    model does not pay), but only while every calibration point stays positive; with
    fewer than 3 points or no spread a pure scale is fitted. :meth:`LatencyPredictor.
    predict_ms` also never goes below the smallest measured/sum ratio seen.
    """
    if not points:
        return 1.0, 0.0
    pts = [(x, y) for x, y in points if x > 0 and y > 0]
    if not pts:
        return 1.0, 0.0
    w = [1.0 / (y * y) for _, y in pts]
    sw = sum(w)
    swx = sum(wi * x for wi, (x, _) in zip(w, pts))
    swy = sum(wi * y for wi, (_, y) in zip(w, pts))
    swxx = sum(wi * x * x for wi, (x, _) in zip(w, pts))
    swxy = sum(wi * x * y for wi, (x, y) in zip(w, pts))
    det = sw * swxx - swx * swx
    if len(pts) >= 3 and det > 1e-12 * sw * swxx:
        a = (sw * swxy - swx * swy) / det
        b = (swy - a * swx) / sw
        if a > 0 and all(a * x + b > 0 for x, _ in pts):
            return a, b
    return swxy / swxx, 0.0


class LatencyPredictor:
    """Predicts end-to-end latency (ms) of any plan of one model on one device.

    >>> # predictor = LatencyPredictor(analysis, LatencyTable.load(dir, "host"))
    >>> # predictor.predict_ms(plan)
    """

    def __init__(self, analysis: Analysis, table: LatencyTable) -> None:
        self.analysis = analysis
        self.table = table
        self.lookup = table.lookup()
        self.sources = {k: e.source.value for k, e in table.rows.items()}
        # off its own grid points a model is predicted from its own context (own_grid_values)
        for key, ms in own_grid_values(analysis, table).items():
            self.lookup[key] = ms
            self.sources[key] = "interpolated"
        self.groups = [g.name for g in analysis.space.groups]
        cal = table.meta.calibration
        mine = [(self._point_sum(p), p.measured_ms) for p in cal if p.model == analysis.model_key]
        self.calibration_scope = "model" if mine else ("device" if cal else "none")
        # a floor for extrapolation: never predict below the lowest measured/sum ratio
        self.min_ratio = min((y / x for x, y in mine if x > 0), default=0.0)
        if mine:
            self.scale, self.offset = fit_calibration(mine)
        elif cal:  # another model's points: transfer only the scale
            self.scale = sum(p.measured_ms for p in cal) / sum(p.kernel_sum_ms for p in cal)
            self.offset = 0.0
        else:
            self.scale, self.offset = 1.0, 0.0
        #: the machine's speed now against the build's (``hwprune.latency._drift.Drift``)
        self.drift = None
        #: factor applied to predictions for that drift at the main reference's length (1.0:
        #: raw table values); a prediction's own factor is :meth:`rescale_at` its length
        self.rescale = 1.0
        #: the statistic predicted ("median" or "p90") and its factor over the median
        self.stat, self.stat_factor = "median", 1.0
        spreads = [p.p90_ms / p.measured_ms for p in cal
                   if p.model == analysis.model_key and p.p90_ms and p.measured_ms > 0]
        #: p90/median of single runs, the median over the model's calibration points (None: not kept)
        self.p90_ratio = statistics.median(spreads) if spreads else None

    def follow_drift(self, runtime, rescale: bool = True) -> None:
        """Re-time the table's reference models now (a few seconds) and keep the result as
        :attr:`drift`; beyond 5% (``Drift.significant``) predictions are scaled by it
        unless ``rescale`` is False. Call again before each prediction that a measurement
        will follow when the machine's speed moves (a shared VM can switch by 40% for tens
        of seconds)."""
        from hwprune.latency._drift import measure_drift

        self.drift = measure_drift(self.table, runtime, self.analysis.model_key)
        significant = self.drift is not None and self.drift.significant
        self.rescale = self.drift.factor if significant and rescale else 1.0

    def use_stat(self, stat: str) -> None:
        """Predict the median (default) or the p90 of single runs (median x :attr:`p90_ratio`)."""
        if stat == "median":
            self.stat, self.stat_factor = "median", 1.0
            return
        if stat != "p90":
            raise ConfigError(f"latency statistic '{stat}' is not known", "use median or p90")
        if self.p90_ratio is None:
            raise TableError(f"the '{self.table.device}' table keeps no run-to-run spread for "
                             f"'{self.analysis.model_key}', so its p90 cannot be predicted",
                             f"re-profile it: hwprune profile --device {self.table.device} --model "
                             f"{self.analysis.lm.spec or self.analysis.lm.model_id}")
        self.stat, self.stat_factor = "p90", self.p90_ratio

    def _point_sum(self, point: CalibrationPoint) -> float:
        """A calibration point's kernel sum on the table as it is now.

        Another model's build may have re-timed or re-interpolated kernels this model
        shares since the point was measured; the fit must see today's sums. Points from
        before ``keep`` was stored keep their recorded sum.
        """
        keep = point.keep
        try:
            return self.kernel_sum_ms(self.analysis.space._plan({g: int(keep[g]) for g in self.groups}))
        except (TypeError, KeyError, MissingKernelsError):  # no plan stored, or not in the table
            return float(point.kernel_sum_ms)

    def _keep(self, plan: PruningPlan) -> list[int]:
        full = self.analysis.space.full_keep(plan)
        return [full[g] for g in self.groups]

    def keys(self, plan: PruningPlan) -> list[str]:
        keep = self._keep(plan)
        return [t.sig(keep).key for t in self.analysis.templates]

    def kernel_times(self, plan: PruningPlan) -> list[KernelTime]:
        keep = self._keep(plan)
        out, missing = [], []
        for t in self.analysis.templates:
            key = t.sig(keep).key
            ms = self.lookup.get(key)
            if ms is None:
                missing.append(key)
                continue
            out.append(KernelTime(t.name, key, ms, self.sources.get(key, "?")))
        if missing:
            self._refuse_off_grid(plan)
            self._raise_missing(missing)
        return out

    def _refuse_off_grid(self, plan: PruningPlan) -> None:
        """A plan whose counts are off the groups' channel grids cannot be predicted from a
        table of grid counts, and profiling cannot fill it: say so, with the nearest counts
        (the plan is refused, not interpolated)."""
        full = self.analysis.space.full_keep(plan)
        off = [(g, full[g.name]) for g in self.analysis.space.groups if full[g.name] not in g.choices]
        if not off:
            return
        g, k = off[0]
        near = [c for c in (max((c for c in g.choices if c < k), default=None),
                            min((c for c in g.choices if c > k), default=None)) if c is not None]
        more = f" (and {len(off) - 1} more groups off their grids)" if len(off) > 1 else ""
        raise PlanError(f"group '{g.name}' keeps {k} channels, which is not on its channel grid; nearest: "
                        f"{' or '.join(map(str, near))}{more}. The '{self.table.device}' table holds grid counts "
                        "only, so this plan is refused (not interpolated)",
                        "use grid counts (plans from hwprune search or prune --ratio have them)")

    def _raise_missing(self, missing: list[str]) -> None:
        from hwprune.models import ZOO

        lm = self.analysis.lm
        # zoo models know their input shape; a user model's must be repeated
        shape = "" if lm.spec in ZOO else f" --input-shape {'x'.join(map(str, lm.input_shape))}"
        cmd = f"hwprune profile --device {self.table.device} --model {lm.spec or lm.model_id}{shape}"
        uniq = sorted(set(missing))
        raise MissingKernelsError(
            f"{len(uniq)} kernels of '{lm.model_id}' are not in the '{self.table.device}' table: "
            + "; ".join(uniq[:3]) + (" ..." if len(uniq) > 3 else ""), uniq, f"fill them with: {cmd}")

    def kernel_sum_ms(self, plan: PruningPlan) -> float:
        """Sum of the plan's kernel latencies from the table, before calibration."""
        keep = self._keep(plan)
        total, missing = 0.0, []
        lookup = self.lookup
        for t in self.analysis.templates:
            key = t.sig(keep).key
            ms = lookup.get(key)
            if ms is None:
                missing.append(key)
            else:
                total += ms
        if missing:
            self._refuse_off_grid(plan)
            self._raise_missing(missing)
        return total

    def rescale_at(self, ms: float) -> float:
        """The drift factor applied to a prediction of ``ms`` (the table's value): the
        references' ratio interpolated by length, or 1.0 when predictions are not rescaled."""
        return self.drift.ratio_at(ms) if self.rescale != 1.0 and self.drift is not None else 1.0

    def table_ms(self, plan: PruningPlan) -> float:
        """Calibrated median end to end as the table says (no drift, no p90 factor)."""
        total = self.kernel_sum_ms(plan)
        return max(self.scale * total + self.offset, self.min_ratio * total)

    def predict_ms(self, plan: PruningPlan) -> float:
        """Calibrated end-to-end prediction in milliseconds."""
        ms = self.table_ms(plan)
        return self.stat_factor * self.rescale_at(ms) * ms

    def check_complete(self) -> None:
        """Raise MissingKernelsError unless every plan in the space can be predicted."""
        missing = sorted(needed_keys(self.analysis) - set(self.lookup))
        if missing:
            self._raise_missing(missing)
