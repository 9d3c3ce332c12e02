"""Latency lookup tables: kernel extraction, profiling, tables and prediction."""
from __future__ import annotations

from pathlib import Path

from hwprune.runtimes.kernels import KernelSig
from hwprune.latency._table import LatencyTable

__all__ = ["KernelSig", "LatencyTable", "open_table", "open_predictor"]


def open_table(device: str, tables: str | Path | None = None, check_fresh: bool = True) -> LatencyTable:
    """Load the device's table; for the host, refuse a table measured elsewhere (stale)."""
    from hwprune._paths import tables_dir
    from hwprune.devices import load_profile

    profile = load_profile(device)
    directory = tables_dir(tables)
    if not profile.measurable_here and not LatencyTable.exists(directory, profile.name):
        return LatencyTable.load(directory, profile.name, create=True)  # filled by estimates
    table = LatencyTable.load(directory, profile.name)
    if check_fresh and profile.measurable_here and table.measured_keys():
        table.check_fresh(profile.local_runtime().facts())
    return table


def open_predictor(analysis, device: str, tables: str | Path | None = None, check_fresh: bool = True):
    """A :class:`LatencyPredictor` for ``analysis``'s model on ``device``.

    Raises ``TableError`` (no table), ``StaleTableError`` (host table measured on another
    CPU or runtime) or ``MissingKernelsError`` (the model's kernels are not all there).
    For a device that cannot be measured from here and whose table holds only estimates,
    missing kernels are estimated on the fly (in memory, marked ``estimated``).
    """
    from hwprune.devices import load_profile
    from hwprune.latency._predict import LatencyPredictor
    from hwprune.latency._profiler import needed_keys

    profile = load_profile(device)
    table = open_table(device, tables, check_fresh)
    if not profile.measurable_here and table.kind in ("estimated", "empty"):
        missing = needed_keys(analysis) - set(table.rows)
        if missing:
            from hwprune.latency._estimate import AnalyticEstimator

            est = AnalyticEstimator(profile)
            for key in missing:
                table.put(key, est.estimate_ms(KernelSig.from_key(key)), "estimated", est.method)
            table.meta.setdefault("estimator", est.describe())
    predictor = LatencyPredictor(analysis, table)
    predictor.check_complete()
    return predictor
