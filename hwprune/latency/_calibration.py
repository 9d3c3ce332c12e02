"""End-to-end calibration of a table: whole models timed, ``measured = scale * sum + offset``.

Kernel sums miss what happens between kernels, so a build times a few whole models (the
dense, the smallest, a uniform and several random plans) end to end and records each as a
:class:`~hwprune.latency.CalibrationPoint`; the predictor fits the model's points.
"""
from __future__ import annotations

import random
import statistics

from hwprune.devices import MicroModel, Runner
from hwprune.latency._drift import NOISY_BUILD, save_reference
from hwprune.latency._in_context import IN_CONTEXT_PASSES
from hwprune.latency._predict import LatencyPredictor
from hwprune.latency._progress import progress_bar
from hwprune.latency._records import CalibrationPoint, CalibrationRound, now_iso
from hwprune.latency._table import LatencyTable
from hwprune.pruning import Analysis
from hwprune.runtimes.timing import lower_quartile

__all__ = ["calibration_plans", "Calibration", "CALIBRATION_MODEL", "idle_ms"]

CALIBRATION_MODEL = ("per model: measured_ms = scale * kernel_sum_ms + offset, least squares on relative "
                     "error over the model's points, kernel_sum_ms recomputed from each point's 'keep' on "
                     "the current table (kernels another build re-timed count), floored at the lowest "
                     "measured/kernel_sum ratio; measured_ms is the standard stopwatch's median on the otherwise "
                     "idle device, estimated as the lower quartile of 9 or more pass medians spread over the "
                     "build (single-threaded runs on the fastest core); median_ms the median pass (the drift "
                     "check's basis), min_ms/max_ms the passes' range; "
                     "p90_ms = measured_ms * the median p90/median ratio of single runs over the passes")


def calibration_plans(analysis: Analysis, n_random: int = 8, seed: int = 0):
    """Dense, smallest, one uniform and several random plans, as ``(name, plan)``.

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


def idle_ms(rounds: list[float]) -> float:
    """The standard stopwatch's median on the otherwise idle device, from a model's round
    medians: their lower quartile.

    What is predicted is a fresh process's reading (:mod:`hwprune.runtimes._bench`) when
    no neighbour disturbs it, and on a shared VM the rounds swing by 30-50%. Measured on a
    2-core VM in a noisy hour against the fastest of three such readings of the 11
    calibration models (MobileNetV2 twice, ResNet-18, ResNet-50, MobileNet-v1; 18 rounds
    each), mean error by model: the median round +5% to +18% (it counts the slow minutes),
    the lowest round -3% to -18% (an extreme of many short pinned samples), the lower
    quartile -1.4% to +8.3% (mean +3.9%)."""
    return lower_quartile(rounds)


class Calibration:
    """End-to-end timings of the calibration plans, in rounds spread over the build.

    Call order: :meth:`between` after each in-context pass (optional), then
    :meth:`finish` once the table's kernels are final. A model's latency is
    :func:`idle_ms` of its round medians (:meth:`Runner.time_models`, each the fastest
    core's), the estimate of what the standard stopwatch (a fresh process, no pinning)
    reports on the otherwise idle device; the median round (the machine's typical speed,
    the drift check's basis), the lowest and the highest (the build's swing) are kept
    beside it. The rounds run between the in-context passes, a minute or more apart, so a
    neighbour's slow minute lands in few of them.
    """

    def __init__(self, analysis: Analysis, runner: Runner, progress: bool, table: LatencyTable,
                 passes: int = 9) -> None:
        from hwprune.onnx_export import to_onnx_bytes

        self.analysis, self.runner, self.passes, self.table = analysis, runner, passes, table
        self.base_passes = passes
        self.models = [(name, plan, MicroModel(f"e2e:{analysis.model_key}:{name}",
                                               to_onnx_bytes(analysis.space.apply(plan), analysis.lm.input_shape)))
                       for name, plan in calibration_plans(analysis)]
        self.times: dict[str, list[float]] = {}
        self.spread: dict[str, list[float]] = {}
        self.done = 0
        # rounds a killed profile of this model journaled (same machine: the table is fresh)
        names = {name for name, _, _ in self.models}
        for rnd in table.pending_calibration:
            if rnd.model == analysis.model_key and set(rnd.times) <= names:
                for name, ms in rnd.times.items():
                    self.times.setdefault(name, []).append(ms)
                for name, ratio in rnd.spread.items():
                    self.spread.setdefault(name, []).append(ratio)
                self.done += rnd.rounds
        self.done = min(self.done, passes)
        self.progress = progress
        self.bar = None
        self.unsteady_models: list[str] = []

    def between(self) -> None:
        """This pass's share of the rounds: called after each in-context pass. One round
        at a time, each journaled, so a kill loses at most the round in flight."""
        for _ in range(max(1, self.passes // IN_CONTEXT_PASSES)):
            self.run(1)

    def run(self, passes: int | None = None) -> None:
        """Time ``passes`` more interleaved rounds over all calibration models (default:
        the rest), one call and one journal line per round: each round's value is kept, so
        the table knows how far the machine's speed swung during the build."""
        n = self.passes - self.done if passes is None else min(passes, self.passes - self.done)
        if n > 0 and self.bar is None:
            self.bar = progress_bar(self.passes, "calibrating end to end", self.progress, unit="round")
        for _ in range(max(0, n)):
            self._round()

    def _round(self) -> None:
        ratios: list[float | None] = []
        times = self.runner.time_models([mm for _, _, mm in self.models], rounds=1,
                                        seconds=2.0 / self.base_passes, spread=ratios)
        ratios += [None] * (len(times) - len(ratios))
        got = {name: ms for (name, _, _), ms in zip(self.models, times) if ms is not None}
        spread = {name: r for (name, _, _), r in zip(self.models, ratios) if r is not None and name in got}
        for name, ms in got.items():
            self.times.setdefault(name, []).append(ms)
        for name, r in spread.items():
            self.spread.setdefault(name, []).append(r)
        self.done += 1
        self.table.append_calibration_round(CalibrationRound(self.analysis.model_key, 1, got, now_iso(), spread))
        self.bar.update(1)

    @property
    def extra_rounds(self) -> int:
        """Rounds re-run beyond the planned ``passes`` (see :meth:`finish`)."""
        return self.passes - self.base_passes

    def unsteady(self) -> list[str]:
        """Calibration models whose two fastest rounds differ by more than
        :data:`~hwprune.latency._drift.NOISY_BUILD`: the machine's speed moved during
        the build, and more rounds make the lower quartile steadier."""
        out = []
        for name, _, _ in self.models:
            xs = sorted(self.times.get(name, []))
            if len(xs) >= 2 and xs[1] > xs[0] * (1 + NOISY_BUILD):
                out.append(name)
        return out

    def finish(self) -> int:
        """Time the remaining rounds and replace the model's points; returns how many.

        Where the machine's speed moved during the build (:meth:`unsteady`), up to
        ``passes`` more rounds are timed, one at a time, until every model's two fastest
        rounds agree (``self.extra_rounds`` counts them; ``self.unsteady_models`` names
        the models that never settled)."""
        self.run()
        while self.unsteady() and self.passes < 2 * self.base_passes:
            self.passes += 1
            self.run(1)
        self.unsteady_models = self.unsteady()
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        table, key = self.table, self.analysis.model_key
        pred = LatencyPredictor(self.analysis, table)
        points = [p for p in table.meta.calibration if p.model != key]
        for name, plan, _ in self.models:
            xs = sorted(self.times.get(name, []))
            if xs:
                ms = idle_ms(xs)
                ratio = statistics.median(self.spread[name]) if self.spread.get(name) else None
                points.append(CalibrationPoint(key, pred.kernel_sum_ms(plan), ms, name,
                                               self.analysis.space.full_keep(plan), xs[-1], self.done, now_iso(),
                                               round(ms * ratio, 6) if ratio else None, xs[0],
                                               median_ms=statistics.median(xs)))
        table.meta.calibration = points
        table.pending_calibration = [r for r in table.pending_calibration if r.model != key]
        table.meta.calibration_model = CALIBRATION_MODEL
        save_reference(table, key, points, {name: mm.onnx for name, _, mm in self.models})
        return sum(1 for p in points if p.model == key)
