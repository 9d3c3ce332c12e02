"""Runtimes: what runs a model on a device, behind one small contract.

The bottom layer of hwprune. A device profile names its runtime (``runtime`` in the
profile, a :class:`RuntimeSpec`); :func:`open_runtime` returns the :class:`Runtime` that
runs models that way on *this* machine. Every timing in hwprune (table calibration,
``hwprune latency --measure``, the search's winner, export's check, the benchmarks)
goes through :meth:`Runtime.time` / :meth:`Runtime.time_interleaved`, i.e. through
:mod:`hwprune.runtimes.timing`, so there is one stopwatch. Runners
(:mod:`hwprune.devices`) only carry a runtime to a device.

Contract (call order)::

    rt = open_runtime(profile.runtime_spec)
    rt.facts()                      # machine, runtime and versions, threads (table metadata)
    rt.identity()                   # the same facts without costly probes (freshness checks)
    sess = rt.session(onnx_bytes)   # a loaded model: sess.inputs, sess.run(feeds), sess.call(feeds)
    rt.time([onnx, ...], protocol)  # one Measurement per model
    rt.kernels(onnx_bytes)          # the kernels the runtime executes (fusions applied)
    if rt.profiles_nodes:           # optional capability, declared
        rt.profile_nodes(onnx_bytes, runs)

Built-ins are found by name in :data:`RUNTIMES`; an unknown name lists the known ones.
"""
from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from hwprune.errors import DeviceError
from hwprune.runtimes.timing import (INTERLEAVED_STATISTIC, Measurement, TimingProtocol, time_interleaved,
                                     time_runs, timing_cores)

__all__ = ["RuntimeSpec", "Runtime", "Session", "RUNTIMES", "open_runtime", "random_inputs",
           "Measurement", "TimingProtocol"]

#: Built-in runtimes by name: "module:class", imported on use (tvm costs seconds).
RUNTIMES = {
    "onnxruntime": "hwprune.runtimes.ort:OrtRuntime",
    "tvm": "hwprune.runtimes.tvm:TvmRuntime",
}
GRAPH_LEVELS = ("disabled", "basic", "extended", "all")


@dataclass(frozen=True)
class RuntimeSpec:
    """How a device runs models: the ``runtime`` object of a device profile, typed.

    ``target`` is the TVM target (a JSON dict) for runtimes that compile.
    """

    name: str
    threads: int = 1
    graph_optimization_level: str = "all"
    provider: str = "CPUExecutionProvider"
    target: dict[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The profile's ``runtime`` object (without the target)."""
        return {"name": self.name, "threads": self.threads,
                "graph_optimization_level": self.graph_optimization_level, "provider": self.provider}

    @classmethod
    def from_dict(cls, doc: dict[str, Any], target: dict[str, Any] | None = None) -> "RuntimeSpec":
        return cls(str(doc.get("name")), int(doc.get("threads", 1)),
                   str(doc.get("graph_optimization_level", "all")),
                   str(doc.get("provider", "CPUExecutionProvider")), target)


@dataclass
class Session:
    """A model loaded by a runtime. ``inputs`` are (name, shape) pairs, ``run`` returns the
    outputs as numpy arrays, ``call`` is the cheapest way to run once (what is timed)."""

    inputs: list[tuple[str, tuple[int, ...]]]
    run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]
    call: Callable[[dict[str, np.ndarray]], Callable[[], Any]]


def random_inputs(inputs: Sequence[tuple[str, Sequence[int]]], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard-normal float32 arrays for every (static-shape) input."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal([int(d) for d in shape], dtype=np.float32) for name, shape in inputs}


class Runtime(abc.ABC):
    """Runs ONNX models one way on this machine. Subclasses implement :meth:`facts`,
    :meth:`session` and :meth:`kernels`; timing is shared."""

    name: ClassVar[str] = "abstract"
    #: whether :meth:`profile_nodes` gives per-kernel times of a whole model
    profiles_nodes: ClassVar[bool] = False

    def __init__(self, spec: RuntimeSpec) -> None:
        self.spec = spec

    @property
    def threads(self) -> int:
        return self.spec.threads

    @abc.abstractmethod
    def facts(self) -> dict[str, Any]:
        """Machine, runtime and versions, threads: what a table records as 'measured on'."""

    @abc.abstractmethod
    def session(self, model: bytes | str) -> Session:
        """Load (compile) a static-shape ONNX model, from bytes or a path."""

    @abc.abstractmethod
    def kernels(self, onnx: bytes) -> list:
        """The kernels (:class:`hwprune.runtimes.kernels.RawKernel`) this runtime runs the
        model as, after its fusions; their signatures key the latency tables."""

    def identity(self) -> dict[str, Any]:
        """The :meth:`facts` that are cheap to read: what a read-only caller compares with a
        table's ``measured_on`` (no session is built). Runtimes whose facts probe the
        machine override this; the default is :meth:`facts`."""
        return self.facts()

    def channel_block(self) -> int:
        """The channel count convolutions are padded to (1: none)."""
        return 1

    def profile_nodes(self, onnx: bytes, runs: int) -> dict[str, float]:
        """Median milliseconds of each kernel of a whole model (only if :attr:`profiles_nodes`)."""
        raise DeviceError(f"runtime '{self.name}' cannot profile the kernels of a whole model")

    def time(self, models: Sequence[bytes | str], protocol: TimingProtocol,
             keys: Sequence[str] | None = None) -> list[Measurement]:
        """Time each model with ``protocol``; a model that fails gives ``Measurement.failed``."""
        out = []
        for i, model in enumerate(models):
            key = keys[i] if keys else str(i)
            try:
                sess = self.session(model)
                out.append(time_runs(sess.call(random_inputs(sess.inputs)), protocol, key,
                                     cores=timing_cores(self.threads)))
            except Exception as exc:  # one bad model must not end a long profiling run
                out.append(Measurement.failed(key, f"{type(exc).__name__}: {exc}"))
        return out

    def time_sessions(self, sessions: Sequence[Session], rounds: int = 5, seconds: float = 1.0,
                      progress: bool = False, repeats: int = 25, warmup: int = 5,
                      spread: list[float] | None = None, statistic: str = "lowest") -> list[float]:
        """End-to-end latency (ms) of loaded models, timed together (see ``time_interleaved``)."""
        calls = [s.call(random_inputs(s.inputs)) for s in sessions]
        return time_interleaved(calls, rounds=rounds, min_time_s=seconds, warmup=warmup, threads=self.threads,
                                progress=progress, repeats=repeats, spread=spread, statistic=statistic)

    def bench(self, models: Sequence[bytes | str], warmup: int = 10, runs: int = 100,
              min_time_s: float = 2.0, readings: int = 1) -> list[dict[str, Any]]:
        """Each model timed with the standard stopwatch (:mod:`hwprune.runtimes._bench`): a
        fresh process per model, this runtime's settings, warm-up, then the median and p90
        of single runs. What ``hwprune bench``, ``latency --measure`` and the search's
        winner report: the number a user's own benchmark shows.

        With ``readings`` > 1 every model is read that many times, in passes over all of
        them, and its fastest reading is returned (``readings_ms`` lists all): the estimate
        of the otherwise idle device, since a busy neighbour only ever adds time."""
        from hwprune.runtimes._bench import stopwatch

        passes = [stopwatch(list(models), self.spec.to_dict(), self.spec.target, warmup, runs, min_time_s)
                  for _ in range(max(1, readings))]
        out = []
        for got in zip(*passes):
            best = min(got, key=lambda r: r["median_ms"])
            out.append({**{k: v for k, v in best.items() if k != "path"},
                        "readings_ms": [r["median_ms"] for r in got]})
        return out

    def measure_latencies(self, models: Sequence[bytes | str], rounds: int = 5, seconds: float = 1.0,
                          progress: bool = False, repeats: int = 25, warmup: int = 5,
                          statistic: str = "median") -> list[dict[str, Any]]:
        """End-to-end latency of each model, with what was measured how, timed in this
        process: ``rounds`` interleaved rounds, by default the median round median (how the
        drift check re-times a table's reference, against its build's median round);
        ``statistic="lower_quartile"`` is what a table's calibration predicts.
        """
        times = self.time_sessions([self.session(m) for m in models], rounds, seconds, progress, repeats, warmup,
                                   statistic=statistic)
        return [{"median_ms": ms, "statistic": INTERLEAVED_STATISTIC.format(statistic=statistic, rounds=rounds),
                 "seconds": seconds, "repeats": repeats, "warmup": warmup, "threads": self.threads,
                 "runtime": self.name} for ms in times]


def open_runtime(spec: RuntimeSpec) -> Runtime:
    """The built-in :class:`Runtime` for ``spec.name``; unknown names list the known ones."""
    if spec.name not in RUNTIMES:
        raise DeviceError(f"runtime '{spec.name}' cannot run models on this machine; known: {', '.join(RUNTIMES)}",
                          "time this device through a runner that reaches it (--runner or --rpc)")
    module, cls = RUNTIMES[spec.name].split(":")
    return getattr(importlib.import_module(module), cls)(spec)
