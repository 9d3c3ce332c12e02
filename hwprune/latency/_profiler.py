"""Building a latency table for a model's whole pruning space.

:func:`profile_model` times what the table lacks on the anchor grid
(:mod:`~hwprune.latency._grid`): in context where the runner can profile whole models
(:mod:`~hwprune.latency._in_context`, designs from :mod:`~hwprune.latency._design`), else
kernel by kernel (:mod:`~hwprune.latency._micro`); interpolates the rest, calibrates end to
end (:mod:`~hwprune.latency._calibration`) and saves. Run again on a complete table it
times nothing. :func:`estimate_model` fills a table from an analytic estimator instead.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from hwprune.devices import Runner
from hwprune.errors import StaleTableError, TableError
from hwprune.latency._calibration import Calibration
from hwprune.latency._grid import anchor_keys, interpolate, needed_keys
from hwprune.latency._in_context import in_context_method, is_unfinished, time_in_context
from hwprune.latency._micro import harness_overhead_ms, micro_method, time_micro
from hwprune.latency._records import Source
from hwprune.latency._table import LatencyTable
from hwprune.pruning import Analysis
from hwprune.runtimes.kernels import KernelSig

__all__ = ["ProfileReport", "profile_model", "estimate_model"]


@dataclass
class ProfileReport:
    device: str
    model: str
    templates: int
    needed: int
    timed: int = 0
    reused: int = 0
    failed: list[str] = field(default_factory=list)
    interpolated: int = 0
    estimated: int = 0
    calibration_points: int = 0
    seconds: float = 0.0
    in_context: int = 0
    table_path: str = ""
    stale_note: str | None = None
    drift: dict[str, Any] | None = None
    #: calibration rounds re-run because the machine's speed moved during the build
    extra_rounds: int = 0
    #: calibration models whose fastest rounds still disagreed by more than 5% after them
    unsteady_models: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _start(table: LatencyTable, runner: Runner, rebuild: bool) -> tuple[dict[str, Any], str | None]:
    """Check the table against the runner's machine (a stale one is archived and started
    over), record how it is measured; returns the runner's facts and the stale note."""
    facts = runner.describe()
    stale_note = None
    if not rebuild and table.measured_keys():
        try:
            table.check_fresh(facts)
        except StaleTableError as exc:
            # Measurements of another machine or runtime are kept, moved aside, never mixed in.
            stale_note = f"{str(exc).split('; re-measure')[0]}; moved to {table.archive()}"
            rebuild = True
    if rebuild:
        table.reset()
    table.meta.measured_on = dict(facts)
    table.meta.runtime = facts.get("runtime") or table.meta.runtime
    table.meta.timing_protocol = dict(runner.protocol.__dict__, statistic="median",
                                      note="one onnxruntime session per micro model, "
                                           "seeded random inputs, wall clock per run")
    if table.meta.runner_overhead_ms is None:
        table.meta.runner_overhead_ms = harness_overhead_ms(runner)
    table.meta.channel_block = int(facts.get("channel_block") or 1)
    return facts, stale_note


def _facts_text(facts: dict[str, Any]) -> str:
    return (f"{facts.get('runtime')} {facts.get('runtime_version')} {facts.get('provider', '')} "
            f"threads={facts.get('threads')} on {facts.get('cpu', facts.get('machine', '?'))} "
            f"via {facts.get('runner')}").strip()


def profile_model(analysis: Analysis, table: LatencyTable, runner: Runner, anchors: int = 5,
                  calibrate: bool = True, progress: bool = True, rebuild: bool = False,
                  on_measure: Callable[[int], None] | None = None,
                  in_context: bool = True) -> ProfileReport:
    """Time what the table lacks for ``analysis``'s model, interpolate, calibrate, save.

    With ``in_context`` and a runner that can profile whole models
    (``runner.profiles_nodes``), anchor kernels are timed where they run: whole pruned
    models whose groups sit at anchor channel counts are run under the runtime's
    per-node profiler, and each kernel's node time is read off. Kernels no such model
    covers, and all kernels on other runners, are timed one by one as micro models.
    An anchor another build only interpolated or timed alone is timed again in context.
    """
    t0 = time.perf_counter()
    facts, stale_note = _start(table, runner, rebuild)
    in_context = in_context and runner.profiles_nodes
    block = table.meta.channel_block
    wanted = anchor_keys(analysis, anchors, block)
    have = {k for k in table.measured_keys() if not in_context or table.rows[k].in_context}
    todo = [k for k in wanted if k not in have]
    unfinished = {k for k in wanted if k in have and is_unfinished(table.rows[k])}
    report = ProfileReport(table.device, analysis.model_key, len(analysis.templates),
                           len(needed_keys(analysis)), reused=len(wanted) - len(todo), stale_note=stale_note)
    known = sum(1 for p in table.meta.calibration if p.model == analysis.model_key)
    cal = Calibration(analysis, runner, progress, table) if calibrate and (todo or not known) else None
    if in_context and (todo or unfinished):
        report.in_context = time_in_context(analysis, table, runner, anchors, block, todo,
                                            in_context_method(_facts_text(facts)), progress,
                                            between_passes=cal.between if cal else None, unfinished=unfinished)
        report.timed = report.in_context
        todo = [k for k in todo if k not in table.measured_keys()]
    overhead = float(table.meta.runner_overhead_ms)
    timed, report.failed = time_micro(table, runner, [wanted[k] for k in todo], overhead,
                                      micro_method(overhead, _facts_text(facts)), progress,
                                      f"profiling {analysis.lm.model_id} on {table.device}",
                                      on_measure=(lambda n: on_measure(report.in_context + n)) if on_measure else None)
    report.timed += timed
    if report.failed:
        table.save()
        raise TableError(f"{len(report.failed)} kernels failed to time (first: {report.failed[0]})",
                         "the others are saved; rerun the same command to retry them")
    report.interpolated = interpolate(analysis, table, anchors, block)
    # nothing new was timed: the calibration stands
    report.calibration_points = cal.finish() if cal is not None else known
    if cal is not None:
        report.extra_rounds, report.unsteady_models = cal.extra_rounds, cal.unsteady_models
    table.record_model(analysis.lm.model_id, analysis.lm.input_shape, templates=len(analysis.templates),
                       anchors_per_group=anchors, needed_kernels=report.needed,
                       measured_kernels=len(wanted), interpolated_kernels=report.interpolated)
    table.save()
    report.seconds = time.perf_counter() - t0
    report.table_path = str(table.paths(table.directory, table.device)[0]) if table.directory else ""
    return report


def estimate_model(analysis: Analysis, table: LatencyTable, estimator) -> ProfileReport:
    """Fill a table for a device that cannot be measured from here with analytic estimates
    (``estimator``: an :class:`~hwprune.latency.AnalyticEstimator` or anything with
    ``estimate_ms(sig)``, ``method`` and ``describe()``). Measurements are never overwritten."""
    t0 = time.perf_counter()
    keys = needed_keys(analysis)
    report = ProfileReport(table.device, analysis.model_key, len(analysis.templates), len(keys))
    for key in keys:
        if key in table.rows and table.rows[key].source is not Source.ESTIMATED:
            continue  # never overwrite a real measurement with an estimate
        table.put(key, estimator.estimate_ms(KernelSig.from_key(key)), Source.ESTIMATED, estimator.method)
        report.estimated += 1
    table.meta.estimator = estimator.describe()
    table.record_model(analysis.lm.model_id, analysis.lm.input_shape, templates=len(analysis.templates),
                       needed_kernels=len(keys), estimated_kernels=report.estimated)
    table.save()
    report.seconds = time.perf_counter() - t0
    return report
