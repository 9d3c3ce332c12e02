"""Timing kernels with onnxruntime, in this process (the host) or in a worker process."""
from __future__ import annotations

import contextlib
import functools
import os
import platform
import statistics
import time
from typing import Any, Iterable, Iterator

from hwprune.devices._runner import Measurement, MicroModel, Runner, TimingProtocol, summarize_times
from hwprune.errors import MissingDependencyError

__all__ = ["OrtLocalRunner", "cpu_model", "ort_facts", "time_ort", "time_interleaved", "measure_latencies_ms",
           "measure_latency_ms"]

_LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
           "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a dependency
        raise MissingDependencyError("onnxruntime is not installed", "pip install onnxruntime") from exc
    return ort


def ort_facts(threads: int, level: str = "all", provider: str = "CPUExecutionProvider") -> dict[str, Any]:
    ort = _ort()
    import numpy

    return {"machine": platform.node(), "arch": platform.machine(), "cpu": cpu_model(),
            "runtime": "onnxruntime", "runtime_version": ort.__version__,
            "provider": provider, "threads": threads, "graph_optimization_level": level,
            "channel_block": channel_block(level, provider),
            "python": platform.python_version(), "numpy": numpy.__version__}


@functools.lru_cache(maxsize=None)
def channel_block(level: str = "all", provider: str = "CPUExecutionProvider") -> int:
    """The channel count this runtime pads convolutions to (1: no padding).

    onnxruntime's CPU provider rewrites convolutions into blocked (NCHWc) kernels whose
    channels are padded to the SIMD block: 16 on AVX-512, 8 on AVX2, none where the
    rewrite is off. A 65-channel probe convolution is optimized and the padded weight
    shape read back, so the block is what this runtime really does, not a guess from the
    CPU flags. A 56-channel layer then costs what a 64-channel one does.
    """
    import tempfile

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cout = 65  # ceil(65 / b) * b differs for every power of two b up to 64
    w = numpy_helper.from_array(np.zeros((cout, 8, 3, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "probe",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, 8, 8])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    ort = _ort()
    so = _session_options(1, level)
    try:
        with tempfile.TemporaryDirectory(prefix="hwprune-block-") as tmp:
            so.optimized_model_filepath = os.path.join(tmp, "probe.onnx")
            ort.InferenceSession(model.SerializeToString(), so, providers=[provider])
            opt = onnx.load(so.optimized_model_filepath).graph
    except Exception:  # a provider that cannot save its graph: assume no padding
        return 1
    dims = {i.name: list(i.dims) for i in opt.initializer}
    for node in opt.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in dims:
            padded = dims[node.input[1]][0]
            for b in (2, 4, 8, 16, 32, 64):
                if -(-cout // b) * b == padded:
                    return b
    return 1


def _session_options(threads: int, level: str):
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[level])
    return so


def make_session(model: bytes | str, threads: int, level: str = "all",
                 provider: str = "CPUExecutionProvider"):
    return _ort().InferenceSession(model, _session_options(threads, level), providers=[provider])


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
def _pinned(core: int | None):
    if core is None:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def _time_runs(sess, feeds: dict, warmup: int, repeats: int, min_time_s: float, timeout_s: float) -> list[float]:
    for _ in range(warmup):
        sess.run(None, feeds)
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        elapsed = time.perf_counter() - start
        if len(times) >= repeats and elapsed >= min_time_s:
            break
        if elapsed > timeout_s or len(times) >= 100 * repeats:
            break
    return times


def time_ort(sess, feeds: dict, protocol: TimingProtocol, key: str = "", cores: list[int] | None = None) -> Measurement:
    """Warm up, then time ``sess.run`` until ``repeats`` runs and ``min_time_s`` have passed.

    With ``cores`` (see :func:`timing_cores`) the runs are split over those cores, each
    pinned in turn, and the fastest core's runs are summarized.
    """
    if not cores:
        times = _time_runs(sess, feeds, protocol.warmup, protocol.repeats, protocol.min_time_s,
                           protocol.timeout_s)
        return summarize_times(key, times, protocol.warmup)
    n = len(cores)
    best: list[float] | None = None
    for core in cores:
        with _pinned(core):
            times = _time_runs(sess, feeds, max(2, protocol.warmup // n), max(3, -(-protocol.repeats // n)),
                               protocol.min_time_s / n, protocol.timeout_s / n)
        if best is None or statistics.median(times) < statistics.median(best):
            best = times
    return summarize_times(key, best, protocol.warmup)


def time_interleaved(sessions: list, rounds: int = 5, min_time_s: float = 0.5, warmup: int = 5,
                     progress: bool = False, threads: int = 1) -> list[float]:
    """Latency (ms) of each session on a quiet machine, robust to slow spells.

    On a shared machine a neighbour can slow every run by 10-40% for tens of seconds
    (memory-bound models suffer most). Each round times every session briefly, in
    alternating order; a session's latency is the lowest of its per-round medians. A slow
    spell only ever adds time, so the lowest round is the one it missed, and interleaving
    gives every session the same chance of a quiet round. Single-threaded sessions are
    also timed on each core in turn (:func:`timing_cores`).
    """
    from tqdm.auto import tqdm

    feeds = [random_feeds(s) for s in sessions]
    per: list[list[float]] = [[] for _ in sessions]
    order = list(range(len(sessions)))
    proto = TimingProtocol(warmup=warmup, repeats=5, min_time_s=min_time_s / rounds)
    cores = timing_cores(threads)
    with tqdm(total=rounds * len(sessions), desc="timing end to end", disable=not progress,
              dynamic_ncols=True) as bar:
        for r in range(rounds):
            for i in (order if r % 2 == 0 else order[::-1]):
                per[i].append(time_ort(sessions[i], feeds[i], proto, cores=cores).median_ms)
                bar.update(1)
    return [min(xs) for xs in per]


def measure_latencies_ms(onnx_models: list[bytes | str], profile: Any, *, rounds: int = 5,
                         min_time_s: float = 1.0) -> list[dict[str, Any]]:
    """End-to-end onnxruntime latency of each model on this machine, profile's settings.

    The protocol of ``hwprune latency --measure`` and of the table's calibration: the
    models are timed in ``rounds`` interleaved rounds (single-threaded runs on each core
    in turn) and each keeps its lowest round median, so a slow spell of a shared machine
    does not land on one model only. Only meaningful for a profile measurable here.
    """
    rt = profile.runtime
    sessions = [make_session(m, profile.threads, rt.get("graph_optimization_level", "all"),
                             rt.get("provider", "CPUExecutionProvider")) for m in onnx_models]
    times = time_interleaved(sessions, rounds=rounds, min_time_s=min_time_s, threads=profile.threads)
    return [{"median_ms": ms, "statistic": f"lowest of {rounds} interleaved round medians",
             "seconds": min_time_s, "threads": profile.threads, "runtime": "onnxruntime"} for ms in times]


def measure_latency_ms(onnx_model: bytes | str, profile: Any, **kw: Any) -> dict[str, Any]:
    """:func:`measure_latencies_ms` of one model."""
    return measure_latencies_ms([onnx_model], profile, **kw)[0]


def random_feeds(sess, seed: int = 0) -> dict:
    """Seeded standard-normal float32 inputs for every (static-shape) input of ``sess``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([int(d) for d in i.shape], dtype=np.float32)
            for i in sess.get_inputs()}


def measure_micro(m: MicroModel, threads: int, level: str, provider: str,
                  protocol: TimingProtocol) -> Measurement:
    """Time any static-shape ONNX model (a one-kernel micro model or a whole network)."""
    try:
        sess = make_session(m.onnx, threads, level, provider)
        return time_ort(sess, random_feeds(sess), protocol, m.key, cores=timing_cores(threads))
    except Exception as exc:  # one bad kernel must not end a long profiling run
        return Measurement.failed(m.key, f"{type(exc).__name__}: {exc}")


def profile_nodes_ort(onnx: bytes, threads: int, level: str, provider: str, runs: int,
                      warmup: int = 5) -> dict[str, float]:
    """Median per-node kernel time (ms) over ``runs`` profiled runs of a whole model.

    Single-threaded models are profiled on each of :func:`timing_cores` in turn (the runs
    split between them) and the core with the smallest total is kept.
    """
    import json
    import tempfile

    ort = _ort()
    cores = timing_cores(threads) or [None]
    best: dict[str, float] | None = None
    with tempfile.TemporaryDirectory(prefix="hwprune-prof-") as tmp:
        so = _session_options(threads, level)
        plain = ort.InferenceSession(onnx, so, providers=[provider])
        feeds = random_feeds(plain)
        for _ in range(warmup):  # warm the caches and the allocator without profiling
            plain.run(None, feeds)
        del plain
        for i, core in enumerate(cores):
            so = _session_options(threads, level)
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(tmp, f"prof{i}")
            with _pinned(core):
                sess = ort.InferenceSession(onnx, so, providers=[provider])
                for _ in range(warmup + max(3, -(-runs // len(cores)))):
                    sess.run(None, feeds)
                with open(sess.end_profiling()) as f:
                    events = json.load(f)
            per: dict[str, list[float]] = {}
            for e in events:
                name = e.get("name", "")
                if e.get("cat") == "Node" and name.endswith("_kernel_time"):
                    per.setdefault(name[: -len("_kernel_time")], []).append(e["dur"] / 1000.0)
            nodes = {k: statistics.median(v[warmup:] or v) for k, v in per.items()}
            if best is None or sum(nodes.values()) < sum(best.values()):
                best = nodes
    return best or {}


class OrtLocalRunner(Runner):
    """onnxruntime on this machine, in this process."""

    name = "local"

    def __init__(self, threads: int = 1, level: str = "all", provider: str = "CPUExecutionProvider",
                 protocol: TimingProtocol | None = None) -> None:
        super().__init__(protocol)
        self.threads, self.level, self.provider = threads, level, provider

    def prepare(self) -> None:
        _ort()

    def describe(self) -> dict[str, Any]:
        return {"runner": self.name, **ort_facts(self.threads, self.level, self.provider)}

    def measure(self, models: Iterable[MicroModel]) -> Iterator[Measurement]:
        for m in models:
            yield measure_micro(m, self.threads, self.level, self.provider, self.protocol)

    def profile_nodes(self, onnx: bytes, runs: int) -> dict[str, float]:
        return profile_nodes_ort(onnx, self.threads, self.level, self.provider, runs)

    def time_models(self, models: list[MicroModel], rounds: int, seconds: float) -> list[float | None]:
        """Sessions stay loaded between calls, as in ``time_interleaved`` (what the
        fidelity benchmark and ``hwprune latency --measure`` use)."""
        sessions = getattr(self, "_sessions", None)
        if sessions is None:
            sessions = self._sessions = {}
        out: list[float | None] = [None] * len(models)
        live = []
        for i, m in enumerate(models):
            if m.key not in sessions:
                try:
                    sessions[m.key] = make_session(m.onnx, self.threads, self.level, self.provider)
                except Exception:
                    sessions[m.key] = None
            if sessions[m.key] is not None:
                live.append(i)
        times = time_interleaved([sessions[models[i].key] for i in live], rounds=rounds,
                                 min_time_s=seconds, threads=self.threads)
        for i, ms in zip(live, times):
            out[i] = ms
        return out

    def close(self) -> None:
        self._sessions = None
