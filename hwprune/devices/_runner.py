"""The runner contract: how kernels are timed on a device.

A runner receives *micro models* (one kernel each, as ONNX bytes keyed by the kernel's
signature string) and yields one :class:`Measurement` per model. Call order::

    runner.prepare()              # connect, check versions; may raise DeviceError
    info = runner.describe()      # machine/runtime facts recorded in the table metadata
    for m in runner.measure(batch):   # yields as each kernel finishes
        ...
    runner.close()                # always (use ``with runner:``); cleans remote files

Built-in runners are found by name in :data:`hwprune.devices.RUNNERS` (``make_runner``).
"""
from __future__ import annotations

import abc
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Iterator

__all__ = ["MicroModel", "Measurement", "TimingProtocol", "Runner", "summarize_times"]


@dataclass(frozen=True)
class MicroModel:
    key: str          # KernelSig.key
    onnx: bytes       # a single-kernel ONNX model, input named "x" (+ "r" for a residual)


@dataclass(frozen=True)
class TimingProtocol:
    warmup: int = 10
    repeats: int = 50
    min_time_s: float = 0.05   # keep repeating until at least this much time was timed
    timeout_s: float = 60.0    # per kernel


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
    error: str | None = None   # set when the kernel failed; the other fields are NaN

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def failed(cls, key: str, error: str) -> "Measurement":
        nan = float("nan")
        return cls(key, nan, nan, nan, nan, nan, 0, 0, error)


def summarize_times(key: str, times_ms: list[float], warmup: int) -> Measurement:
    """Median, 10th/90th percentile, mean and std of repeated timings (milliseconds)."""
    xs = sorted(times_ms)
    n = len(xs)

    def pct(q: float) -> float:
        return xs[min(n - 1, max(0, int(round(q * (n - 1)))))]

    return Measurement(key, statistics.median(xs), pct(0.1), pct(0.9), statistics.fmean(xs),
                       statistics.pstdev(xs) if n > 1 else 0.0, n, warmup)


class Runner(abc.ABC):
    """Times micro models on one device. Subclasses implement the three methods."""

    name: str = "abstract"

    def __init__(self, protocol: TimingProtocol | None = None) -> None:
        self.protocol = protocol or TimingProtocol()

    @abc.abstractmethod
    def prepare(self) -> None:
        """Connect to the device and check it can run kernels."""

    @abc.abstractmethod
    def measure(self, models: Iterable[MicroModel]) -> Iterator[Measurement]:
        """Time each model; yield a Measurement (possibly ``failed``) per model, in order."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """Facts for the table metadata: machine, cpu/gpu, runtime and versions, threads."""

    def profile_nodes(self, onnx: bytes, runs: int) -> dict[str, float]:
        """Optional: run a whole model ``runs`` times with the runtime's per-node profiler
        and return the median milliseconds of each node (by the runtime's node name).

        Runners that cannot (TVM) raise NotImplementedError; the profiler then times
        kernels one by one as micro models.
        """
        raise NotImplementedError

    def time_models(self, models: list[MicroModel], rounds: int, seconds: float) -> list[float | None]:
        """Latency (ms) of each whole model: ``rounds`` interleaved rounds over all of them,
        about ``seconds`` of runs per model in all; each keeps its lowest round median (a
        slow spell on a shared machine only adds time). None where a model failed.

        This default times each round with :meth:`measure`; runners may keep the models
        loaded between calls (the local onnxruntime runner does).
        """
        from dataclasses import replace

        saved = self.protocol
        self.protocol = replace(saved, repeats=5, min_time_s=seconds / max(1, rounds))
        best: list[float | None] = [None] * len(models)
        try:
            for _ in range(rounds):
                for i, m in enumerate(self.measure(models)):
                    if not m.error and (best[i] is None or m.median_ms < best[i]):
                        best[i] = m.median_ms
        finally:
            self.protocol = saved
        return best

    def close(self) -> None:
        """Release the device and remove remote files. Safe to call twice."""

    def __enter__(self) -> "Runner":
        self.prepare()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
