"""Latency lookup tables: building them on a device, estimating them, predicting from them.

Two backends fill a table: :func:`profile_model` times kernels on the device (a runner)
and :func:`estimate_model` asks an analytic model (:class:`AnalyticEstimator`). A
:class:`LatencyPredictor` sums a plan's kernels from the table and calibrates the sum.

>>> # table = open_table("host")
>>> # predictor = open_predictor(analysis, "host"); predictor.predict_ms(plan)
"""
from __future__ import annotations

from pathlib import Path

from hwprune.latency._calibration import calibration_plans
from hwprune.latency._design import anchor_plans
from hwprune.latency._estimate import AnalyticEstimator, Factors
from hwprune.latency._grid import anchor_keys, needed_keys
from hwprune.latency._predict import KernelTime, LatencyPredictor, fit_calibration
from hwprune.latency._profiler import ProfileReport, estimate_model, profile_model
from hwprune.latency._records import (TABLE_SCHEMA, CalibrationPoint, CalibrationRound, Entry, Source,
                                      TableMeta)
from hwprune.latency._table import LatencyTable
from hwprune.runtimes.kernels import KernelSig

__all__ = ["KernelSig", "LatencyTable", "Entry", "Source", "TableMeta", "CalibrationPoint",
           "CalibrationRound", "TABLE_SCHEMA", "LatencyPredictor", "KernelTime", "fit_calibration",
           "ProfileReport", "profile_model", "estimate_model", "needed_keys", "anchor_keys", "anchor_plans",
           "calibration_plans", "AnalyticEstimator", "Factors", "open_table", "open_predictor"]


def open_table(device: str, tables: str | Path | None = None, check_fresh: bool = True) -> LatencyTable:
    """Load the device's table (yours, else the shipped one); refuse a table of another
    device (its metadata names another device or runtime) and, for the host, a table
    measured elsewhere (stale).

    Read-only and cheap: freshness is checked on the runtime's identity
    (:meth:`~hwprune.runtimes.Runtime.identity`, no session built); the channel block
    the predictor uses is the one the table recorded.
    """
    from hwprune._paths import resolve_table
    from hwprune.devices import load_profile

    profile = load_profile(device)
    directory = resolve_table(profile.name, tables)[0]  # yours, else the shipped one
    if not profile.measurable_here and not LatencyTable.exists(directory, profile.name):
        return LatencyTable.load(directory, profile.name, create=True)  # filled by estimates
    table = LatencyTable.load(directory, profile.name)
    table.check_profile(profile)  # a table of another device copied in under this name
    if check_fresh and profile.measurable_here and table.measured_keys():
        table.check_fresh(profile.local_runtime().identity())
    return table


def open_predictor(analysis, device: str, tables: str | Path | None = None,
                   check_fresh: bool = True, drift: bool = False, rescale: bool = True,
                   stat: str = "median") -> LatencyPredictor:
    """A :class:`LatencyPredictor` for ``analysis``'s model on ``device``.

    Raises ``TableError`` (no table), ``StaleTableError`` (host table measured on another
    CPU or runtime) or ``MissingKernelsError`` (the model's kernels are not all there).
    For a device that cannot be measured from here and whose table holds only estimates,
    missing kernels are estimated on the fly (in memory, marked ``estimated``).

    With ``drift`` on a device at hand, the table's reference model is re-timed (about a
    second) and the result kept as ``predictor.drift``; when this machine now runs more
    than 5% slower or faster than during the build, predictions are scaled by that ratio
    (``predictor.rescale``) unless ``rescale`` is False.

    ``stat`` is the statistic predicted: ``"median"`` (what a stopwatch reports) or
    ``"p90"`` (the 90th percentile of single runs, from the spread the calibration kept;
    ``TableError`` when the table has none for this model).
    """
    from hwprune.devices import load_profile

    profile = load_profile(device)
    table = open_table(device, tables, check_fresh)
    if not profile.measurable_here and table.kind in ("estimated", "empty"):
        missing = needed_keys(analysis) - set(table.rows)
        if missing:
            est = AnalyticEstimator(profile)
            for key in missing:
                table.put(key, est.estimate_ms(KernelSig.from_key(key)), Source.ESTIMATED, est.method)
            if table.meta.estimator is None:
                table.meta.estimator = est.describe()
    predictor = LatencyPredictor(analysis, table)
    predictor.check_complete()
    predictor.use_stat(stat)
    if drift and profile.measurable_here:
        predictor.follow_drift(profile.local_runtime(), rescale)
    return predictor
