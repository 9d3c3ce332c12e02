"""One timing protocol for every runtime: warm up, run, summarize in milliseconds.

A runtime hands this module a zero-argument callable that runs its model once; everything
about *how* it is timed (warm-up, repeat count and minimum time, per-core pinning on
shared machines, interleaved rounds for comparing several models) lives here, so the
calibration, ``hwprune latency --measure``, the search's winner, export's check and the
benchmarks all use the same stopwatch.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Sequence

__all__ = ["TimingProtocol", "Measurement", "summarize_times", "timing_cores", "time_runs",
           "time_interleaved", "INTERLEAVED_STATISTIC"]

RunFn = Callable[[], Any]
#: a safety bound only: ``min_time_s`` decides how long a sub-millisecond model is timed
#: (a cap of a few hundred runs timed 30 us models for 10 ms, one burst that a cold core
#: or a neighbour's spell read 1.5-1.8x slow)
MAX_RUNS = 1_000_000


@dataclass(frozen=True)
class TimingProtocol:
    warmup: int = 10
    repeats: int = 50
    min_time_s: float = 0.05   # keep repeating until at least this much time was timed
    timeout_s: float = 60.0    # per model


@dataclass(frozen=True)
class Measurement:
    key: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    runs: int
    warmup: int
    error: str | None = None   # set when the model failed; the other fields are NaN

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def failed(cls, key: str, error: str) -> "Measurement":
        nan = float("nan")
        return cls(key, nan, nan, nan, nan, nan, 0, 0, error)


def summarize_times(key: str, times_ms: Sequence[float], warmup: int) -> Measurement:
    """Median, 10th/90th percentile, mean and std of repeated timings (milliseconds)."""
    xs = sorted(times_ms)
    n = len(xs)

    def pct(q: float) -> float:
        return xs[min(n - 1, max(0, int(round(q * (n - 1)))))]

    return Measurement(key, statistics.median(xs), pct(0.1), pct(0.9), statistics.fmean(xs),
                       statistics.pstdev(xs) if n > 1 else 0.0, n, warmup)


def timing_cores(threads: int, most: int = 4) -> list[int]:
    """Cores to time a single-threaded model on, one after the other (empty: don't pin).

    On shared machines (cloud VMs) a neighbour often slows one core by 10-40% for tens of
    seconds while the others run normally. Timing on each core in turn and keeping the
    fastest core's runs measures the machine, not the neighbour. Multi-threaded timing is
    never pinned.
    """
    if threads != 1 or not hasattr(os, "sched_getaffinity"):
        return []
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return []
    step = max(1, len(cores) // most)
    return cores[::step][:most]


@contextlib.contextmanager
def pinned(core: int | None) -> Iterator[None]:
    """Run the block on one core (``None``: leave the affinity alone)."""
    if core is None:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def _runs_ms(run: RunFn, warmup: int, repeats: int, min_time_s: float, timeout_s: float) -> list[float]:
    for _ in range(warmup):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter_ns()
        run()
        times.append((time.perf_counter_ns() - t0) / 1e6)
        elapsed = time.perf_counter() - start
        if len(times) >= repeats and elapsed >= min_time_s:
            break
        if elapsed > timeout_s or len(times) >= MAX_RUNS:
            break
    return times


def time_runs(run: RunFn, protocol: TimingProtocol, key: str = "", cores: Sequence[int] | None = None
              ) -> Measurement:
    """Warm up, then time ``run()`` until ``repeats`` runs and ``min_time_s`` have passed.

    With ``cores`` (see :func:`timing_cores`) the runs are split over those cores, each
    pinned in turn, and the fastest core's runs are summarized.
    """
    if not cores:
        return summarize_times(key, _runs_ms(run, protocol.warmup, protocol.repeats, protocol.min_time_s,
                                             protocol.timeout_s), protocol.warmup)
    n = len(cores)
    best: list[float] | None = None
    for core in cores:
        with pinned(core):
            times = _runs_ms(run, max(2, protocol.warmup // n), max(3, -(-protocol.repeats // n)),
                             protocol.min_time_s / n, protocol.timeout_s / n)
        if best is None or statistics.median(times) < statistics.median(best):
            best = times
    return summarize_times(key, best or [], protocol.warmup)


#: What :func:`time_interleaved` reports, for the records that keep its numbers.
INTERLEAVED_STATISTIC = "{statistic} of {rounds} interleaved round medians, single-threaded runs on the fastest core"


def lower_quartile(xs: Sequence[float]) -> float:
    """The lower quartile of ``xs`` (linear interpolation; the value itself for one)."""
    ys = sorted(xs)
    return ys[0] if len(ys) == 1 else statistics.quantiles(ys, n=4, method="inclusive")[0]


#: how :func:`time_interleaved` summarizes a model's round medians
ROUND_STATISTICS = {"lowest": min, "lower_quartile": lower_quartile, "median": statistics.median}


def time_interleaved(runs: Sequence[RunFn], rounds: int = 5, min_time_s: float = 0.5, warmup: int = 5,
                     progress: bool = False, threads: int = 1, repeats: int = 25,
                     spread: list[float] | None = None, statistic: str = "lowest") -> list[float]:
    """Latency (ms) of each model on an otherwise idle machine, robust to slow spells.

    On a shared machine a neighbour can slow every run by 10-40% for tens of seconds, and
    one core more than another. Each round times every model briefly, in alternating
    order; a model's latency is the lowest of its per-round medians. A slow spell only
    ever adds time, so the lowest round is the one it missed, and interleaving gives every
    model the same chance of a quiet round. Single-threaded models are also timed on each
    core in turn (:func:`timing_cores`). Each model gets at least ``repeats`` timed runs
    and ``min_time_s`` timed seconds in all, split over the rounds. When ``spread`` is a
    list, each model's p90/median ratio of single runs (the median over its rounds) is
    appended to it (what ``--latency-stat p90`` predicts from). ``statistic="median"``
    returns the median round instead of the lowest: the machine as it runs *now*, slow
    spell included (what the drift check wants; the lowest of a few rounds under a steady
    neighbour favours short models, whose rounds vary more); ``"lower_quartile"`` is a
    table calibration's estimate of the otherwise idle device.
    """
    from tqdm.auto import tqdm

    per: list[list[Measurement]] = [[] for _ in runs]
    order = list(range(len(runs)))
    proto = TimingProtocol(warmup=warmup, repeats=max(3, -(-repeats // rounds)), min_time_s=min_time_s / rounds)
    cores = timing_cores(threads)
    with tqdm(total=rounds * len(runs), desc="timing end to end", disable=not progress,
              dynamic_ncols=True) as bar:
        for r in range(rounds):
            for i in (order if r % 2 == 0 else order[::-1]):
                per[i].append(time_runs(runs[i], proto, cores=cores))
                bar.update(1)
    if spread is not None:
        spread += [statistics.median(m.p90_ms / m.median_ms for m in ms) for ms in per]
    pick = ROUND_STATISTICS[statistic]
    return [pick([m.median_ms for m in ms]) for ms in per]
