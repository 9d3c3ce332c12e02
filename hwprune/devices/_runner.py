"""The runner contract: how kernels are timed on a device.

A runner receives *micro models* (one kernel each, as ONNX bytes keyed by the kernel's
signature string) and yields one :class:`Measurement` per model. Call order::

    runner.prepare()              # connect, check versions; may raise DeviceError
    info = runner.describe()      # machine/runtime facts recorded in the table metadata
    for m in runner.measure(batch):   # yields as each kernel finishes
        ...
    runner.close()                # always (use ``with runner:``); cleans remote files

A runner carries a runtime (:mod:`hwprune.runtimes`) to a device: in this process
(:class:`~hwprune.devices.LocalRunner`), through ``hwprune worker`` over any command, or
over TVM RPC. Built-in runners are found by name in :data:`hwprune.devices.RUNNERS`
(``make_runner``).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from hwprune.errors import DeviceError
from hwprune.runtimes.timing import Measurement, TimingProtocol

__all__ = ["MicroModel", "Measurement", "TimingProtocol", "Runner"]


@dataclass(frozen=True)
class MicroModel:
    key: str          # KernelSig.key
    onnx: bytes       # a single-kernel ONNX model, input named "x" (+ "r" for a residual)


class Runner(abc.ABC):
    """Times micro models on one device. Subclasses implement the three methods."""

    name: str = "abstract"
    #: whether :meth:`profile_nodes` can time the kernels of a whole model (declared, so the
    #: profiler knows up front whether kernels are timed in context or as micro models)
    profiles_nodes: bool = False

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
        """Only where :attr:`profiles_nodes`: run a whole model ``runs`` times with the
        runtime's per-node profiler and return the median milliseconds of each node (by the
        runtime's node name). Elsewhere the profiler times kernels one by one as micro models.
        """
        raise DeviceError(f"runner '{self.name}' cannot profile the kernels of a whole model")

    def time_models(self, models: list[MicroModel], rounds: int, seconds: float,
                    spread: list[float | None] | None = None) -> list[float | None]:
        """Latency (ms) of each whole model on the otherwise idle device: ``rounds``
        interleaved rounds over all of them, about ``seconds`` of runs per model in all;
        each keeps its lowest round median (a slow spell on a shared machine only adds
        time). None where a model failed. When ``spread`` is a list, each model's p90/median
        ratio of single runs (None where it failed) is appended.

        This default times each round with :meth:`measure`; runners may keep the models
        loaded between calls (the local runner does).
        """
        import statistics
        from dataclasses import replace

        saved = self.protocol
        self.protocol = replace(saved, repeats=5, min_time_s=seconds / max(1, rounds))
        got: list[list[tuple[float, float]]] = [[] for _ in models]
        try:
            for _ in range(rounds):
                for i, m in enumerate(self.measure(models)):
                    if not m.error:
                        got[i].append((m.median_ms, m.p90_ms / m.median_ms))
        finally:
            self.protocol = saved
        if spread is not None:
            spread += [statistics.median(r for _, r in xs) if xs else None for xs in got]
        return [min(ms for ms, _ in xs) if xs else None for xs in got]

    def close(self) -> None:
        """Release the device and remove remote files. Safe to call twice."""

    def __enter__(self) -> "Runner":
        self.prepare()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
