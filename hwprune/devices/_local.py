"""The runner for this machine: a runtime in this process."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from hwprune.devices._runner import MicroModel, Runner
from hwprune.runtimes import Runtime, RuntimeSpec, Session, open_runtime
from hwprune.runtimes.timing import Measurement, TimingProtocol

__all__ = ["LocalRunner"]


class LocalRunner(Runner):
    """Times models with ``runtime`` (default: single-threaded onnxruntime) right here."""

    name = "local"

    def __init__(self, runtime: Runtime | RuntimeSpec | None = None, protocol: TimingProtocol | None = None) -> None:
        super().__init__(protocol)
        if not isinstance(runtime, Runtime):
            runtime = open_runtime(runtime or RuntimeSpec("onnxruntime"))
        self.runtime = runtime
        self.profiles_nodes = runtime.profiles_nodes
        self._sessions: dict[str, Session | None] = {}

    def prepare(self) -> None:
        self.runtime.facts()  # fails early when the runtime is missing

    def describe(self) -> dict[str, Any]:
        return {"runner": self.name, **self.runtime.facts()}

    def measure(self, models: Iterable[MicroModel]) -> Iterator[Measurement]:
        for m in models:
            yield self.runtime.time([m.onnx], self.protocol, [m.key])[0]

    def profile_nodes(self, onnx: bytes, runs: int) -> dict[str, float]:
        return self.runtime.profile_nodes(onnx, runs)

    def time_models(self, models: list[MicroModel], rounds: int, seconds: float,
                    spread: list[float | None] | None = None) -> list[float | None]:
        """Sessions stay loaded between calls (the calibration calls this between passes)."""
        for m in models:
            if m.key not in self._sessions:
                try:
                    self._sessions[m.key] = self.runtime.session(m.onnx)
                except Exception:
                    self._sessions[m.key] = None
        live = [i for i, m in enumerate(models) if self._sessions[m.key] is not None]
        ratios: list[float] = []
        times = self.runtime.time_sessions([self._sessions[models[i].key] for i in live], rounds, seconds,
                                           spread=ratios)
        out: list[float | None] = [None] * len(models)
        by_model: list[float | None] = [None] * len(models)
        for i, ms, r in zip(live, times, ratios):
            out[i], by_model[i] = ms, r
        if spread is not None:
            spread += by_model
        return out

    def close(self) -> None:
        self._sessions = {}
