"""Runners that time micro models with Apache TVM: here, or on a device over TVM RPC.

Both compile each kernel with TVM's default schedules for the device's target (the
runtime the artifact will use) and time it with ``time_evaluator``. A kernel that
fails or exceeds ``protocol.timeout_s`` yields :meth:`Measurement.failed` and the run
goes on; ``retries`` extra attempts are made first.

>>> from hwprune.devices._tvm_runner import TvmRpcRunner
>>> with TvmRpcRunner(tracker="127.0.0.1:9190", key="pixel7",
...                   target={"kind": "llvm", "mtriple": "aarch64-linux-gnu"}) as r:  # doctest: +SKIP
...     for m in r.measure(models):
...         print(m.key, m.median_ms)
"""
from __future__ import annotations

import platform
import threading
from typing import Any, Callable, Iterable, Iterator

from hwprune.devices._runner import Measurement, MicroModel, Runner, TimingProtocol
from hwprune.runtimes.timing import summarize_times
from hwprune.runtimes.tvm import HOST_TARGET
from hwprune.errors import (CompileError, DeviceError, DeviceTimeoutError, HwpruneError,
                            MissingDependencyError)

__all__ = ["TvmLocalRunner", "TvmRpcRunner"]



def _error_line(exc: BaseException) -> str:
    from hwprune.runtimes.tvm import _first_line
    return f"{type(exc).__name__}: {_first_line(exc)}"


class TvmLocalRunner(Runner):
    """Times kernels on this machine with TVM, each in a worker process.

    The worker (TVM's PopenWorker) is killed and restarted when a kernel exceeds
    ``protocol.timeout_s``, so one hung kernel costs its timeout, not the run.
    """

    name = "tvm-local"

    def __init__(self, protocol: TimingProtocol | None = None, *, target: dict[str, Any] | None = None,
                 threads: int = 1, retries: int = 1) -> None:
        super().__init__(protocol)
        self.target = dict(target or HOST_TARGET)
        self.threads = threads
        self.retries = retries
        self._worker: Any = None
        self._resolved: dict[str, Any] | None = None

    def prepare(self) -> None:
        from hwprune.runtimes import tvm as _tvm
        self._resolved = _tvm.resolve_target(self.target)
        if _tvm.is_cross(self._resolved):
            raise DeviceError(f"target {self._resolved} is not this machine; use TvmRpcRunner")
        self._worker = _new_worker()

    def describe(self) -> dict[str, Any]:
        from hwprune.runtimes import tvm as _tvm
        from hwprune.runtimes.tvm.schedule import library_version
        return {"runner": self.name, "runtime": "tvm", "tvm_version": _tvm.tvm_version(),
                "schedules": library_version(), "target": self._resolved or self.target, "threads": self.threads,
                "machine": platform.machine(), "cpu": (self._resolved or {}).get("mcpu"),
                "protocol": self.protocol.__dict__}

    def measure(self, models: Iterable[MicroModel]) -> Iterator[Measurement]:
        if self._worker is None:
            self.prepare()
        from hwprune.runtimes.tvm import time_onnx_local
        p = self.protocol
        for model in models:
            def attempt(model: MicroModel = model) -> list[float]:
                self._worker.send(time_onnx_local,
                                  (model.onnx, self._resolved, p.warmup, p.repeats, p.min_time_s, self.threads),
                                  timeout=p.timeout_s)
                try:
                    return self._worker.recv()
                except TimeoutError as exc:  # PopenWorker killed the process already
                    raise DeviceTimeoutError(f"kernel {model.key} took over {p.timeout_s:g} s") from exc
                except ChildProcessError as exc:
                    self._worker = _new_worker()
                    raise DeviceError(f"worker died while timing {model.key}: {exc}") from exc
            yield _with_retries(model.key, attempt, self.retries, p.warmup)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.kill()
            self._worker = None


def _new_worker() -> Any:
    from hwprune.runtimes.tvm import import_tvm
    import_tvm()
    from tvm.support.popen_pool import PopenWorker
    return PopenWorker()


class TvmRpcRunner(Runner):
    """Times kernels on a device registered with a TVM RPC tracker.

    Kernels are compiled here for ``target`` (cross-linked with ``cross_cc`` for a
    phone), uploaded, timed with ``time_evaluator`` on the device and deleted from it
    in ``finally``. A kernel over ``protocol.timeout_s`` or a lost connection fails that
    kernel; the session is reopened for the next one. A tracker without the key raises
    DeviceError at once instead of waiting. The server's thread pool is sized to ``threads``
    (the device profile's) on each session, and the size it ran with is recorded.
    """

    name = "tvm-rpc"

    def __init__(self, tracker: str, key: str, target: dict[str, Any], *,
                 protocol: TimingProtocol | None = None, cross_cc: str | None = None,
                 device: str = "cpu", threads: int = 1, retries: int = 1,
                 connect_timeout_s: float = 20.0) -> None:
        super().__init__(protocol)
        from hwprune.runtimes.tvm import parse_tracker
        parse_tracker(tracker)  # validate early, one clear line
        self.tracker = tracker
        self.key = key
        self.target = dict(target)
        self.cross_cc = cross_cc
        self.device = device
        self.threads = threads
        self.retries = retries
        self.connect_timeout_s = connect_timeout_s
        self._session: Any = None
        self._remote_info: dict[str, Any] = {}

    def prepare(self) -> None:
        from hwprune.runtimes import tvm as _tvm
        self.target = _tvm.resolve_target(self.target)
        self._connect()

    def _connect(self) -> Any:
        from hwprune.runtimes import tvm as _tvm
        self._session = _tvm.connect_rpc(self.tracker, self.key, timeout_s=self.connect_timeout_s)
        if self.device == "cpu":
            self._remote_info["threads"] = _tvm.remote_threads(self._session, self.threads)
        return self._session

    def describe(self) -> dict[str, Any]:
        from hwprune.runtimes import tvm as _tvm
        from hwprune.runtimes.tvm.schedule import library_version
        return {"runner": self.name, "runtime": "tvm", "tvm_version": _tvm.tvm_version(),
                "schedules": library_version(), "tracker": self.tracker, "key": self.key, "target": self.target,
                "device": self.device, "threads": self._remote_info.get("threads", self.threads),
                "protocol": self.protocol.__dict__}

    def measure(self, models: Iterable[MicroModel]) -> Iterator[Measurement]:
        from hwprune.runtimes.tvm import time_onnx_rpc
        p = self.protocol
        for model in models:
            def attempt(model: MicroModel = model) -> list[float]:
                session = self._session or self._connect()
                return _call_with_timeout(
                    lambda: time_onnx_rpc(session, model.onnx, self.target, warmup=p.warmup,
                                          repeats=p.repeats, min_time_s=p.min_time_s,
                                          cross_cc=self.cross_cc, device=self.device),
                    p.timeout_s, f"kernel {model.key} on '{self.key}'")

            def attempt_or_reset(model: MicroModel = model) -> list[float]:
                try:
                    return attempt(model)
                except HwpruneError as exc:
                    if not isinstance(exc, DeviceError) or "no RPC server" not in str(exc):
                        self._session = None  # reconnect next time: the session may be dead
                    raise
                except Exception:
                    self._session = None
                    raise
            yield _with_retries(model.key, attempt_or_reset, self.retries, p.warmup)

    def close(self) -> None:
        self._session = None  # dropping the session closes the socket; files went in finally


def _call_with_timeout(fn: Callable[[], list[float]], timeout_s: float, what: str) -> list[float]:
    """Run ``fn`` in a daemon thread; DeviceTimeoutError when it is not done in time.

    A remote call cannot be interrupted, so the thread is abandoned and the caller
    drops the session (closing its socket ends the call).
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True, name="hwprune-rpc-kernel")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise DeviceTimeoutError(f"{what} did not finish in {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _with_retries(key: str, attempt: Callable[[], list[float]], retries: int, warmup: int) -> Measurement:
    last = ""
    for _ in range(1 + max(0, retries)):
        try:
            return summarize_times(key, attempt(), warmup)
        except (CompileError, MissingDependencyError) as exc:
            return Measurement.failed(key, str(exc))  # the same input fails the same way
        except DeviceError as exc:
            if "no RPC server" in str(exc) or "cannot reach RPC tracker" in str(exc):
                return Measurement.failed(key, str(exc))  # retrying cannot help
            last = str(exc)
        except HwpruneError as exc:
            last = str(exc)
        except Exception as exc:  # TVM/RPC errors: record and continue with the next kernel
            last = _error_line(exc)
    return Measurement.failed(key, last)
