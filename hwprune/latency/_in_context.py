"""In-context timing: anchor kernels timed where they run, inside whole pruned models.

Each pass runs one anchor design (:func:`hwprune.latency._design.anchor_plans`, a
different variant per pass) under the runtime's per-node profiler, so every kernel is
timed among different neighbours; its latency is the median of its per-pass medians
(``Entry.samples_ms``). Each kernel is journaled after its first pass and updated after
each later one, so a kill loses at most the model in flight.
"""
from __future__ import annotations

from typing import Callable, Collection

from hwprune.devices import Runner
from hwprune.latency._design import anchor_plans
from hwprune.latency._progress import progress_bar
from hwprune.latency._records import Entry, Source, now_iso
from hwprune.latency._table import LatencyTable
from hwprune.pruning import Analysis

__all__ = ["IN_CONTEXT_PASSES", "in_context_method", "is_unfinished", "time_in_context"]

IN_CONTEXT_PASSES = 3  # sets of neighbours each anchor kernel is timed among


def in_context_method(facts_text: str, passes: int = IN_CONTEXT_PASSES) -> str:
    return (f"in context (per-node profile of whole pruned models; median over {passes} sets of "
            f"neighbours): {facts_text}")


def is_unfinished(entry: Entry, passes: int = IN_CONTEXT_PASSES) -> bool:
    """An in-context entry a killed run timed among fewer sets of neighbours than planned.

    Entries of schema-1 tables carry no samples: they were saved complete.
    """
    return entry.in_context and 0 < len(entry.samples_ms) < passes


def time_in_context(analysis: Analysis, table: LatencyTable, runner: Runner, anchors: int, block: int,
                    todo: Collection[str], method: str, progress: bool, passes: int = IN_CONTEXT_PASSES,
                    between_passes: Callable[[], None] | None = None,
                    unfinished: Collection[str] = frozenset()) -> int:
    """Time the ``todo`` anchor kernels (and finish the ``unfinished`` ones) inside whole
    pruned models; returns how many kernels got their first in-context timing.

    ``between_passes()`` runs after each pass (the calibration's end-to-end rounds),
    spreading both over time.
    """
    designs = [anchor_plans(analysis, anchors, block, variant) for variant in range(passes)]
    refine: set[str] = set(unfinished)  # kernels the later passes refine
    todo = set(todo)
    timed = 0
    bar = progress_bar(sum(map(len, designs)), f"profiling {analysis.lm.model_id} on {table.device} in context",
                       progress, unit="model")
    try:
        for pass_no, plans in enumerate(designs):
            for keep in plans:
                bar.update(1)
                timed += _time_plan(analysis, table, runner, keep, pass_no, todo, refine, method)
            if between_passes is not None:
                between_passes()
    finally:
        bar.close()
    return timed


def _time_plan(analysis: Analysis, table: LatencyTable, runner: Runner, keep: dict[str, int], pass_no: int,
               todo: set[str], refine: set[str], method: str) -> int:
    """Profile one anchor plan if it holds a kernel still wanted; returns new kernels."""
    from hwprune.onnx_export import to_onnx_bytes

    space = analysis.space
    plan = space._plan(keep)
    full = space.full_keep(plan)
    keep_vec = [full[g.name] for g in space.groups]
    keys = [(t, t.sig(keep_vec).key) for t in analysis.templates]

    def wanted(key: str) -> bool:
        entry = table.rows.get(key)
        if key in todo and not (entry is not None and entry.in_context):
            return True
        return key in refine and len(table.rows[key].samples_ms) <= pass_no

    want = {k for _, k in keys if wanted(k)}
    if not want:
        return 0  # finished before a kill, or nothing new
    nodes = runner.profile_nodes(to_onnx_bytes(space.apply(plan), analysis.lm.input_shape), runner.protocol.repeats)
    samples: dict[str, list[float]] = {}
    for t, key in keys:
        name = next((n for n in t.runtime_names() if n in nodes), None)
        if name is not None:
            samples.setdefault(key, []).append(nodes[name])
    new = 0
    for key, xs in samples.items():
        if key not in want:
            continue
        xs.sort()
        ms = xs[len(xs) // 2]
        entry = table.rows.get(key)
        if entry is None or not entry.in_context:  # new, or replacing a micro/interpolated entry
            table.record(Entry(key, ms, Source.MEASURED, method, now_iso(), "in_context", (ms,),
                               runs=runner.protocol.repeats))
            refine.add(key)
            new += 1
        else:
            table.record(entry.with_sample(ms))
    return new
