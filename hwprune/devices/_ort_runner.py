"""Timing kernels with onnxruntime, in this process (the host) or in a worker process."""
from __future__ import annotations

import platform
import time
from typing import Any, Iterable, Iterator

from hwprune.devices._runner import Measurement, MicroModel, Runner, TimingProtocol, summarize_times
from hwprune.errors import MissingDependencyError

__all__ = ["OrtLocalRunner", "cpu_model", "ort_facts", "time_ort"]

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
            "python": platform.python_version(), "numpy": numpy.__version__}


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


def time_ort(sess, feeds: dict, protocol: TimingProtocol, key: str = "") -> Measurement:
    """Warm up, then time ``sess.run`` until ``repeats`` runs and ``min_time_s`` have passed."""
    for _ in range(protocol.warmup):
        sess.run(None, feeds)
    times: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter_ns()
        sess.run(None, feeds)
        times.append((time.perf_counter_ns() - t0) / 1e6)
        elapsed = time.perf_counter() - start
        if len(times) >= protocol.repeats and elapsed >= protocol.min_time_s:
            break
        if elapsed > protocol.timeout_s or len(times) >= 100 * protocol.repeats:
            break
    return summarize_times(key, times, protocol.warmup)


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
        return time_ort(sess, random_feeds(sess), protocol, m.key)
    except Exception as exc:  # one bad kernel must not end a long profiling run
        return Measurement.failed(m.key, f"{type(exc).__name__}: {exc}")


def profile_nodes_ort(onnx: bytes, threads: int, level: str, provider: str, runs: int,
                      warmup: int = 5) -> dict[str, float]:
    """Median per-node kernel time (ms) over ``runs`` profiled runs of a whole model."""
    import json
    import os
    import statistics
    import tempfile

    ort = _ort()
    so = _session_options(threads, level)
    with tempfile.TemporaryDirectory(prefix="hwprune-prof-") as tmp:
        plain = ort.InferenceSession(onnx, so, providers=[provider])
        feeds = random_feeds(plain)
        for _ in range(warmup):  # warm the caches and the allocator without profiling
            plain.run(None, feeds)
        del plain
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "prof")
        sess = ort.InferenceSession(onnx, so, providers=[provider])
        for _ in range(warmup + runs):
            sess.run(None, feeds)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    per: dict[str, list[float]] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") == "Node" and name.endswith("_kernel_time"):
            per.setdefault(name[: -len("_kernel_time")], []).append(e["dur"] / 1000.0)
    return {k: statistics.median(v[warmup:] or v) for k, v in per.items()}


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
