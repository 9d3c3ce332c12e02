"""Building a latency table for a model's whole pruning space.

Every kernel template of the model varies with at most a couple of pruning groups. We
time each template on a sparse grid of *anchor* channel counts per group (the smallest,
the largest and evenly spaced choices between), and fill every other reachable channel
count by (bi)linear interpolation between the measured anchors. Interpolated rows are
written to the table as ``source=interpolated`` with the anchors named in ``method``, so
nothing is passed off as measured.

Runtimes that pad channels to a SIMD block (onnxruntime's NCHWc kernels: 16 channels on
AVX-512) make latency a staircase in the channel count: 56 channels cost what 64 do.
Anchors and interpolation therefore work on *padded* channel counts, ``ceil(c / block) *
block`` (counts under one block stay distinct), with the block the runner reports
(``channel_block``; 1 means no padding).
"""
from __future__ import annotations

import itertools
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Container, Sequence

from hwprune.pruning import Analysis
from hwprune.devices._runner import MicroModel, Runner
from hwprune.errors import StaleTableError, TableError
from hwprune.latency._micro import micro_model
from hwprune.latency._table import LatencyTable, now_iso

__all__ = ["ProfileReport", "profile_model", "needed_keys", "estimate_model", "calibration_plans"]

IN_CONTEXT_PASSES = 3  # sets of neighbours each anchor kernel is timed among


def _padded(c: int, block: int) -> int:
    """The channel count a blocked kernel really computes. Counts under one block stay
    as they are: onnxruntime reads such an input without reordering it (as it does the
    3 channels of an image), so 8 channels are cheaper than 16 there."""
    return c if c < block else -(-c // block) * block


def _anchor_values(choices: Sequence[int], n: int, block: int = 1) -> list[int]:
    """Up to ``n`` channel counts to measure, spread evenly over the distinct padded sizes.

    Each padded size is represented by its block-aligned choice when there is one (else
    the largest choice that pads to it), so a measured anchor is the cost of whole blocks.
    """
    rep: dict[int, int] = {}
    for c in sorted(choices):
        p = _padded(c, block)
        if p not in rep or c == p or rep[p] != p:
            rep[p] = c
    sizes = sorted(rep)
    if len(sizes) > n:
        idx = sorted({round(i * (len(sizes) - 1) / (n - 1)) for i in range(n)})
        sizes = [sizes[i] for i in idx]
    return [rep[p] for p in sizes]


def _keep_vector(analysis: Analysis, assign: dict[int, int]) -> list[int]:
    keep = [g.size for g in analysis.space.groups]
    for gi, v in assign.items():
        keep[gi] = v
    return keep


def needed_keys(analysis: Analysis) -> set[str]:
    """Every kernel signature any plan of the model's pruning space can produce."""
    out: set[str] = set()
    groups = analysis.space.groups
    for t in analysis.templates:
        axes = list(t.groups_used)
        for combo in itertools.product(*[groups[g].choices for g in axes]):
            out.add(t.sig(_keep_vector(analysis, dict(zip(axes, combo)))).key)
    return out


def anchor_keys(analysis: Analysis, anchors: int, block: int = 1) -> dict[str, Any]:
    """The signatures to time: each template at every combination of anchor values."""
    out = {}
    groups = analysis.space.groups
    for t in analysis.templates:
        axes = list(t.groups_used)
        for combo in itertools.product(*[_anchor_values(groups[g].choices, anchors, block) for g in axes]):
            sig = t.sig(_keep_vector(analysis, dict(zip(axes, combo))))
            out[sig.key] = sig
    return out


def _bracket(values: Sequence[int], x: int, block: int = 1) -> tuple[int, int, float]:
    """Anchors ``lo <= x <= hi`` around ``x`` and the weight of ``hi``, in padded sizes."""
    px = _padded(x, block)
    for lo, hi in zip(values, values[1:]):
        plo, phi = _padded(lo, block), _padded(hi, block)
        if plo <= px <= phi:
            return lo, hi, (px - plo) / (phi - plo) if phi > plo else 0.0
    if len(values) == 1 and _padded(values[0], block) == px:
        return values[0], values[0], 0.0
    raise ValueError(f"{x} outside {values[0]}..{values[-1]}")


def _interpolations(analysis: Analysis, lookup: dict[str, float], anchors: int, block: int = 1,
                    only: Container[str] | None = None):
    """``(key, ms, method)`` for every needed signature of the model that is not one of
    its own anchors (and is in ``only``, if given): multilinear in padded channel counts
    between the anchors around it.

    ``lookup`` must hold the model's anchor kernels; each key is yielded once.
    """
    groups = analysis.space.groups
    pad_note = f", channels padded to blocks of {block}" if block > 1 else ""
    done: set[str] = set()  # a key several templates share is computed once
    for t in analysis.templates:
        axes = list(t.groups_used)
        grids = [_anchor_values(groups[g].choices, anchors, block) for g in axes]
        for combo in itertools.product(*[groups[g].choices for g in axes]):
            if all(v in grid for v, grid in zip(combo, grids)):
                continue  # an anchor: measured
            key = t.sig(_keep_vector(analysis, dict(zip(axes, combo)))).key
            if key in done or (only is not None and key not in only):
                continue
            done.add(key)
            brackets = [_bracket(grid, v, block) for grid, v in zip(grids, combo)]
            total, used = 0.0, []
            for corner in itertools.product(*[(0, 1)] * len(axes)):
                w = 1.0
                assign = {}
                for (lo, hi, f), bit, g in zip(brackets, corner, axes):
                    w *= f if bit else (1.0 - f)
                    assign[g] = hi if bit else lo
                if w == 0.0:
                    continue
                ckey = t.sig(_keep_vector(analysis, assign)).key
                if ckey not in lookup:
                    raise TableError(f"anchor kernel {ckey} was not measured; rerun hwprune profile")
                total += w * lookup[ckey]
                used.append(f"{'/'.join(str(assign[g]) for g in axes)}")
            yield key, total, (f"{'bi' if len(axes) == 2 else 'multi' if len(axes) > 2 else ''}linear over "
                               f"measured channel grid ({', '.join(used)}){pad_note}")


def _measured(table: LatencyTable) -> dict[str, float]:
    return {k: float(r["latency_ms"]) for k, r in table.rows.items() if r["source"] == "measured"}


def interpolate(analysis: Analysis, table: LatencyTable, anchors: int, block: int = 1) -> int:
    """(Re)compute every needed signature that was not measured; returns how many.

    Interpolated rows are recomputed on every build (their anchors may have been re-timed).
    """
    lookup = _measured(table)
    added = 0
    for key, ms, method in _interpolations(analysis, lookup, anchors, block):
        if key in lookup:
            continue  # measured, in another model's build
        table.put(key, ms, "interpolated", method)
        added += 1
    return added


def own_grid_values(analysis: Analysis, table: LatencyTable) -> dict[str, float]:
    """This model's interpolation for signatures that other models' builds measured.

    A kernel's time depends on the model around it: a 56-channel convolution another
    model timed among its own neighbours can cost more than this model's 64-channel
    anchor does here. Off its own anchors, a model is predicted from its own grid (timed
    in its own context), so its predictions stay consistent with each other; the table
    keeps the other model's measurement for that model. Empty when the model was not
    profiled with a grid (e.g. estimated tables).
    """
    info = table.meta.get("models", {}).get(analysis.model_key, {})
    anchors = info.get("anchors_per_group")
    if not anchors:
        return {}
    block = int(table.meta.get("channel_block") or 1)
    measured = _measured(table)
    own = anchor_keys(analysis, int(anchors), block)  # a signature may be an anchor of another template
    try:
        return {key: ms for key, ms, _ in _interpolations(analysis, measured, int(anchors), block, only=measured)
                if key not in own}
    except TableError:
        return {}


def calibration_plans(analysis: Analysis, n_random: int = 8, seed: int = 0):
    """Dense, smallest, one uniform and several random plans.

    The ends keep the fit from extrapolating; the random plans (each group's ratio drawn
    from [0, 0.8], as a search proposes them) put most of the weight where searches
    look, where channel counts fall between the measured grid points.
    """
    space = analysis.space
    rng = random.Random(seed)
    plans = [("dense", space.dense_plan()), ("smallest", space.smallest_plan()),
             ("uniform50", space.uniform_plan(0.5))]
    plans += [(f"random{i}", space.random_plan(rng, 0.0, 0.8)) for i in range(n_random)]
    return plans


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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _progress(total: int, desc: str, enabled: bool, unit: str = "kernel"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled or total == 0,
                file=sys.stderr, dynamic_ncols=True)


def profile_model(analysis: Analysis, table: LatencyTable, runner: Runner, anchors: int = 5,
                  calibrate: bool = True, progress: bool = True, rebuild: bool = False,
                  on_measure: Callable[[int], None] | None = None,
                  in_context: bool = True) -> ProfileReport:
    """Time what the table lacks for ``analysis``'s model, interpolate, calibrate, save.

    With ``in_context`` (and a runner that can profile whole models), anchor kernels are
    timed where they run: whole pruned models whose groups sit at anchor channel counts
    are run under the runtime's per-node profiler, and each kernel's node time is read
    off. Kernels no such model covers are timed one by one as micro models.
    """
    t0 = time.perf_counter()
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
        table.rows.clear()
        table.pending_calibration.clear()
        table.meta["calibration"] = []
        table.meta["models"] = {}
    table.meta["measured_on"] = {k: v for k, v in facts.items()}
    table.meta["timing_protocol"] = dict(runner.protocol.__dict__, statistic="median",
                                         note="one onnxruntime session per micro model, "
                                              "seeded random inputs, wall clock per run")
    if "runner_overhead_ms" not in table.meta:
        table.meta["runner_overhead_ms"] = _harness_overhead_ms(runner)
    overhead = float(table.meta["runner_overhead_ms"])
    block = int(facts.get("channel_block") or 1)
    table.meta["channel_block"] = block
    wanted = anchor_keys(analysis, anchors, block)
    # A kernel's time depends on where it runs: an anchor that another model's build left
    # interpolated or timed alone (micro model) is timed again here, among its neighbours.
    have = {k for k in table.measured_keys() if not in_context or _in_context_row(table.rows[k])}
    todo = [k for k in wanted if k not in have]
    report = ProfileReport(table.device, analysis.model_key, len(analysis.templates),
                           len(needed_keys(analysis)), reused=len(wanted) - len(todo),
                           stale_note=stale_note)
    facts_text = (f"{facts.get('runtime')} {facts.get('runtime_version')} {facts.get('provider', '')} "
                  f"threads={facts.get('threads')} on {facts.get('cpu', facts.get('machine', '?'))} "
                  f"via {facts.get('runner')}").strip()
    known = sum(1 for p in table.meta.get("calibration", []) if p.get("model") == analysis.model_key)
    cal = _Calibration(analysis, runner, progress, table) if calibrate and (todo or not known) else None
    # kernels a killed run timed among fewer neighbours than planned: finish them too
    unfinished = {k for k in wanted if k in have and _in_context_unfinished(table.rows[k])}
    if (todo or unfinished) and in_context and runner.profiles_nodes:
        _profile_in_context(analysis, table, runner, anchors, block, set(todo), facts_text, report,
                            progress, between_passes=cal.between if cal else None,
                            unfinished=unfinished)
        have = table.measured_keys()
        todo = [k for k in todo if k not in have]
    method = f"micro model (median minus {overhead:.4f} ms harness overhead): {facts_text}"
    bar = _progress(len(todo), f"profiling {analysis.lm.model_id} on {table.device}", progress)
    try:
        micro = (MicroModel(k, micro_model(wanted[k])) for k in todo)
        for m in runner.measure(micro):
            if m.error:
                report.failed.append(f"{m.key}: {m.error}")
            else:
                table.append_journal({"key": m.key, "latency_ms": max(m.median_ms - overhead, 0.1 * m.median_ms),
                                      "raw_median_ms": m.median_ms, "p10_ms": m.p10_ms,
                                      "p90_ms": m.p90_ms, "std_ms": m.std_ms, "runs": m.runs,
                                      "source": "measured", "method": method, "created": now_iso()})
                report.timed += 1
            bar.update(1)
            if on_measure:
                on_measure(report.timed)
    finally:
        bar.close()
    if report.failed:
        table.save()
        raise TableError(f"{len(report.failed)} kernels failed to time (first: {report.failed[0]})",
                         "the others are saved; rerun the same command to retry them")
    report.interpolated = interpolate(analysis, table, anchors, block)
    if cal is not None:
        report.calibration_points = cal.finish(table)
    else:
        report.calibration_points = known  # nothing new was timed: the calibration stands
    table.record_model(analysis.lm.model_id, analysis.lm.input_shape, templates=len(analysis.templates),
                       anchors_per_group=anchors, needed_kernels=report.needed,
                       measured_kernels=len(wanted), interpolated_kernels=report.interpolated)
    table.save()
    report.seconds = time.perf_counter() - t0
    report.table_path = str(table.paths(table.directory, table.device)[0]) if table.directory else ""
    return report


def _next_prime(n: int) -> int:
    n = max(2, n)
    while any(n % d == 0 for d in range(2, int(n ** 0.5) + 1)):
        n += 1
    return n


def anchor_plans(analysis: Analysis, anchors: int, block: int = 1, variant: int = 0) -> list[dict[str, int]]:
    """Whole-model plans whose kernels, together, hit every anchor combination.

    Each group gets a colour ``c_g`` so that groups sharing a kernel have different
    colours; plan ``(u, v)`` puts group ``g`` at anchor ``(u + v * c_g) mod p``. For two
    groups of different colours the map ``(u, v) -> (u + v c_1, u + v c_2)`` is a
    bijection of Z_p^2, so every pair of anchors occurs in some plan (p prime).

    ``variant`` > 0 adds a seeded offset per group, ``(u + v * c_g + o_g) mod p``: still
    every pair, but each kernel among different neighbours. A kernel's time depends on
    its neighbours (what is in cache, how the runtime lays the tensors out), so the
    profiler times every anchor in several such contexts and keeps the median.
    """
    import itertools as _it

    groups = analysis.space.groups
    grid = [_anchor_values(g.choices, anchors, block) for g in groups]
    neighbours: dict[int, set[int]] = {i: set() for i in range(len(groups))}
    for t in analysis.templates:
        for a, b in _it.combinations(t.groups_used, 2):
            neighbours[a].add(b)
            neighbours[b].add(a)
    p = _next_prime(anchors)
    while True:
        colour: dict[int, int] = {}
        for g in sorted(neighbours, key=lambda g: -len(neighbours[g])):
            used = {colour[n] for n in neighbours[g] if n in colour}
            free = [c for c in range(p) if c not in used]
            if not free:
                break
            colour[g] = free[0]
        if len(colour) == len(groups):
            break
        p = _next_prime(p + 1)
    pairs = any(neighbours.values())
    rng = random.Random(variant)
    offset = [rng.randrange(p) if variant else 0 for _ in groups]
    plans = []
    for u in range(p):
        for v in range(p if pairs else 1):
            plans.append({groups[g].name: grid[g][((u + v * colour[g] + offset[g]) % p) % len(grid[g])]
                          for g in range(len(groups))})
    return plans


def _profile_in_context(analysis: Analysis, table: LatencyTable, runner: Runner, anchors: int, block: int,
                        todo: set[str], facts_text: str, report: "ProfileReport", progress: bool,
                        passes: int = IN_CONTEXT_PASSES, between_passes: Callable[[], None] | None = None,
                        unfinished: set[str] = frozenset()) -> None:
    """Time the ``todo`` anchor kernels inside whole pruned models.

    Each of the ``passes`` runs a different set of anchor plans (:func:`anchor_plans`
    variants), so every kernel is timed among different neighbours; its latency is the
    median over passes. Each kernel is journaled after its first pass (and updated after
    each later one), so a kill loses at most the model in flight. ``between_passes()``
    runs after each pass (the calibration's end-to-end passes), spreading both over time.
    """
    from hwprune.onnx_export import to_onnx_bytes

    space = analysis.space
    method = (f"in context (per-node profile of whole pruned models; median over {passes} sets of "
              f"neighbours): {facts_text}")
    designs = [anchor_plans(analysis, anchors, block, variant) for variant in range(passes)]
    mine: set[str] = set(unfinished)  # kernels the later passes refine
    bar = _progress(sum(map(len, designs)), f"profiling {analysis.lm.model_id} on {table.device} in context",
                    progress, unit="model")
    try:
        for pass_no, plans in enumerate(designs):
            for keep in plans:
                bar.update(1)
                plan = space._plan(keep)
                full = space.full_keep(plan)
                keep_vec = [full[g.name] for g in space.groups]
                keys = [(t, t.sig(keep_vec).key) for t in analysis.templates]
                wanted = {k for _, k in keys if (k in todo and not _in_context_row(table.rows.get(k)))
                          or (k in mine and len(_samples(table.rows[k])) <= pass_no)}
                if not wanted:
                    continue  # finished before a kill, or nothing new
                nodes = runner.profile_nodes(to_onnx_bytes(space.apply(plan), analysis.lm.input_shape),
                                             runner.protocol.repeats)
                samples: dict[str, list[float]] = {}
                for t, key in keys:
                    for name in t.runtime_names():
                        if name in nodes:
                            samples.setdefault(key, []).append(nodes[name])
                            break
                for key, xs in samples.items():
                    if key not in wanted:
                        continue
                    xs.sort()
                    ms = xs[len(xs) // 2]
                    if not _in_context_row(table.rows.get(key)):  # new, or replacing a micro/interpolated row
                        table.append_journal({"key": key, "latency_ms": ms, "runs": runner.protocol.repeats,
                                              "samples_ms": f"{ms:.6g}", "source": "measured", "method": method,
                                              "created": now_iso()})
                        mine.add(key)
                        report.timed += 1
                        report.in_context += 1
                    else:
                        row = table.rows[key]
                        got = sorted([*_samples(row), ms])
                        table.append_journal({**row, "samples_ms": ";".join(f"{x:.6g}" for x in got),
                                              "latency_ms": statistics.median(got), "created": now_iso()})
            if between_passes is not None:
                between_passes()
    finally:
        bar.close()


def _in_context_row(row: dict[str, Any] | None) -> bool:
    """Whether ``row`` was measured inside whole models (not alone, not interpolated)."""
    return (row is not None and row.get("source") == "measured"
            and str(row.get("method", "")).startswith("in context"))


def _in_context_unfinished(row: dict[str, Any]) -> bool:
    return _in_context_row(row) and len(_samples(row)) < IN_CONTEXT_PASSES


def _samples(row: dict[str, Any]) -> list[float]:
    """The per-context medians a row was made from (``samples_ms``, ';'-separated)."""
    text = row.get("samples_ms")
    if not isinstance(text, str) or not text:
        return [float(row["latency_ms"])]
    return [float(x) for x in text.split(";")]


def _harness_overhead_ms(runner: Runner) -> float:
    """Latency of a near-empty model (one ReLU on one value): the per-run harness cost."""
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "overhead",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    res = next(iter(runner.measure([MicroModel("overhead:relu:1x1x1x1", m.SerializeToString())])))
    return 0.0 if res.error else float(res.median_ms)


class _Calibration:
    """End-to-end timings of the calibration plans, in rounds spread over the build.

    A model's latency is its lowest round median (:meth:`Runner.time_models`, the protocol
    the fidelity benchmark measures with): slow spells on a shared machine only add time,
    and the rounds run between the in-context passes, a minute or more apart.
    """

    def __init__(self, analysis: Analysis, runner: Runner, progress: bool, table: LatencyTable,
                 passes: int = 9) -> None:
        from hwprune.onnx_export import to_onnx_bytes

        self.analysis, self.runner, self.passes, self.table = analysis, runner, passes, table
        self.models = [(name, plan, MicroModel(f"e2e:{analysis.model_key}:{name}",
                                               to_onnx_bytes(analysis.space.apply(plan), analysis.lm.input_shape)))
                       for name, plan in calibration_plans(analysis)]
        self.times: dict[str, list[float]] = {}
        self.done = 0
        # rounds a killed profile of this model journaled (same machine: the table is fresh)
        names = {name for name, _, _ in self.models}
        for row in table.pending_calibration:
            if row.get("model") == analysis.model_key and set(row.get("times", {})) <= names:
                for name, ms in row["times"].items():
                    self.times.setdefault(name, []).append(float(ms))
                self.done += int(row.get("rounds", 0))
        self.done = min(self.done, passes)
        self.progress = progress
        self.bar = None

    def between(self) -> None:
        """This pass's share of the rounds: called after each in-context pass. One round
        at a time, each journaled, so a kill loses at most the round in flight."""
        for _ in range(max(1, self.passes // IN_CONTEXT_PASSES)):
            self.run(1)

    def run(self, passes: int | None = None) -> None:
        """Time ``passes`` more interleaved rounds over all calibration models (default: the rest)."""
        n = self.passes - self.done if passes is None else min(passes, self.passes - self.done)
        if n <= 0:
            return
        if self.bar is None:
            self.bar = _progress(self.passes, "calibrating end to end", self.progress, unit="round")
        times = self.runner.time_models([mm for _, _, mm in self.models], rounds=n,
                                        seconds=2.0 * n / self.passes)
        got = {name: ms for (name, _, _), ms in zip(self.models, times) if ms is not None}
        for name, ms in got.items():
            self.times.setdefault(name, []).append(ms)
        self.done += n
        self.table.append_calibration_round({"model": self.analysis.model_key, "rounds": n, "times": got,
                                             "created": now_iso()})
        self.bar.update(n)

    def finish(self, table: LatencyTable) -> int:
        from hwprune.latency._predict import LatencyPredictor

        self.run()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        pred = LatencyPredictor(self.analysis, table)
        key = self.analysis.model_key
        points = [p for p in table.meta.get("calibration", []) if p.get("model") != key]
        for name, plan, _ in self.models:
            xs = sorted(self.times.get(name, []))
            if xs:
                points.append({"model": key, "plan": name, "keep": self.analysis.space.full_keep(plan),
                               "kernel_sum_ms": pred.kernel_sum_ms(plan),
                               "measured_ms": xs[0], "max_ms": xs[-1], "rounds": self.done,
                               "date": now_iso()})
        table.meta["calibration"] = points
        table.pending_calibration = [r for r in table.pending_calibration if r.get("model") != key]
        table.meta["calibration_model"] = ("per model: measured_ms = scale * kernel_sum_ms + offset, "
                                           "least squares on relative error over the model's points, "
                                           "kernel_sum_ms recomputed from each point's 'keep' on the "
                                           "current table (kernels another build re-timed count), "
                                           "floored at the lowest measured/kernel_sum ratio; "
                                           "measured_ms is the lowest of several pass medians")
        return sum(1 for p in points if p["model"] == key)


def estimate_model(analysis: Analysis, table: LatencyTable, estimator) -> ProfileReport:
    """Fill a table for a device that cannot be measured from here with analytic estimates."""
    from hwprune.runtimes.kernels import KernelSig

    t0 = time.perf_counter()
    keys = needed_keys(analysis)
    report = ProfileReport(table.device, analysis.model_key, len(analysis.templates), len(keys))
    for key in keys:
        if key in table.rows and table.rows[key]["source"] != "estimated":
            continue  # never overwrite a real measurement with an estimate
        table.put(key, estimator.estimate_ms(KernelSig.from_key(key)), "estimated", estimator.method)
        report.estimated += 1
    table.meta["estimator"] = estimator.describe()
    table.record_model(analysis.lm.model_id, analysis.lm.input_shape, templates=len(analysis.templates),
                       needed_kernels=len(keys), estimated_kernels=report.estimated)
    table.save()
    report.seconds = time.perf_counter() - t0
    return report
