"""``hwprune worker``: time kernels sent over stdin, answer on stdout (JSON lines).

Protocol (one JSON object per line)::

    worker -> {"hwprune_worker": 1, "version": "..."}            on start
    runner -> {"cmd": "describe", "runtime": "onnxruntime", "threads": 1, "level": "all", "provider": "..."}
    worker -> {"describe": {...}}
    runner -> {"cmd": "measure", "key": "...", "onnx_b64": "...", "protocol": {...}}
    worker -> {"measurement": {...}}
    runner -> {"cmd": "profile_nodes", "onnx_b64": "...", "runs": 50}
    worker -> {"nodes": {"node name": median_ms, ...}}
    runner -> {"cmd": "quit"}

Anything that can start a process and talk over its stdin/stdout reaches a device this
way: ``--runner "ssh user@jetson hwprune worker"``. The worker keeps no files.
"""
from __future__ import annotations

import base64
import json
import os
import selectors
import shlex
import subprocess
import sys
import time
from typing import Any, Iterable, Iterator, TextIO

from hwprune import __version__
from hwprune.devices._runner import Measurement, MicroModel, Runner, TimingProtocol
from hwprune.errors import DeviceError, DeviceTimeoutError
from hwprune.runtimes import RuntimeSpec, open_runtime

__all__ = ["serve", "WorkerRunner", "PROTOCOL_VERSION"]

PROTOCOL_VERSION = 1


def serve(stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Answer requests until ``quit`` or end of input. Every malformed request (not JSON,
    not an object, an unknown command, missing or mistyped fields) is answered with
    ``{"error": ...}`` and the worker goes on serving."""
    def send(obj: dict) -> None:
        stdout.write(json.dumps(obj) + "\n")
        stdout.flush()

    send({"hwprune_worker": PROTOCOL_VERSION, "version": __version__})
    state: dict[str, Any] = {"settings": {"runtime": "onnxruntime", "threads": 1, "level": "all",
                                          "provider": "CPUExecutionProvider"}, "runtime": None}
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError as exc:
            send({"error": f"bad request: not JSON ({exc})"})
            continue
        if not isinstance(msg, dict):
            send({"error": f"bad request: a JSON {type(msg).__name__}, not an object"})
            continue
        if msg.get("cmd") == "quit":
            break
        try:
            send(_answer(msg, state))
        except _BadRequest as exc:
            send({"error": f"bad request: {exc}"})
        except Exception as exc:  # the worker outlives any one request
            send({"error": f"{type(exc).__name__}: {exc}"})
    return 0


class _BadRequest(ValueError):
    pass


def _field(msg: dict, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """``msg[name]`` when it has the right type (bool is not a number here)."""
    if name not in msg:
        if default is ...:
            raise _BadRequest(f"'{msg.get('cmd')}' needs '{name}'")
        return default
    value = msg[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)) \
            or not isinstance(value, kind):
        raise _BadRequest(f"'{name}' must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _onnx(msg: dict) -> bytes:
    try:
        return base64.b64decode(_field(msg, "onnx_b64", str), validate=True)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, _BadRequest):
            raise
        raise _BadRequest("'onnx_b64' is not base64") from exc


def _protocol(msg: dict) -> TimingProtocol:
    doc = _field(msg, "protocol", dict, {})
    known = set(TimingProtocol.__dataclass_fields__)
    unknown = sorted(set(doc) - known)
    if unknown:
        raise _BadRequest(f"unknown protocol fields {unknown}; known: {sorted(known)}")
    for name in ("warmup", "repeats"):
        v = doc.get(name, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "repeats" else 0):
            raise _BadRequest(f"protocol '{name}' must be an integer >= {1 if name == 'repeats' else 0}, got {v!r}")
    for name in ("min_time_s", "timeout_s"):
        v = doc.get(name, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or v == float("inf"):
            raise _BadRequest(f"protocol '{name}' must be a finite number >= 0, got {v!r}")
    return TimingProtocol(**doc)


def _answer(msg: dict, state: dict[str, Any]) -> dict:
    cmd = msg.get("cmd")
    if cmd == "describe":
        settings = dict(state["settings"])
        for k in settings:
            if k in msg:
                settings[k] = _field(msg, k, int if k == "threads" else str)
        if settings["threads"] < 1:
            raise _BadRequest(f"'threads' must be >= 1, got {settings['threads']}")
        state["runtime"] = open_runtime(RuntimeSpec(settings["runtime"], settings["threads"],
                                                    settings["level"], settings["provider"]))
        state["settings"] = settings
        return {"describe": state["runtime"].facts()}
    if cmd == "profile_nodes":
        onnx, runs = _onnx(msg), _field(msg, "runs", int, 50)
        if runs < 1:
            raise _BadRequest(f"'runs' must be >= 1, got {runs}")
        state["runtime"] = state["runtime"] or open_runtime(RuntimeSpec("onnxruntime"))
        return {"nodes": state["runtime"].profile_nodes(onnx, runs)}
    if cmd == "measure":
        key, onnx, proto = _field(msg, "key", str), _onnx(msg), _protocol(msg)
        state["runtime"] = state["runtime"] or open_runtime(RuntimeSpec("onnxruntime"))
        res = state["runtime"].time([onnx], proto, [key])[0]
        return {"error": f"cannot time {key}: {res.error}"} if res.error else {"measurement": res.to_dict()}
    raise _BadRequest(f"unknown command {cmd!r}; known: describe, measure, profile_nodes, quit")


class WorkerRunner(Runner):
    """Talks to ``hwprune worker`` through any command (local subprocess, ssh, adb shell).

    Each kernel has ``protocol.timeout_s``; a dead or silent worker is restarted up to
    ``retries`` times, after which the kernel is recorded as failed and the run goes on.
    """

    name = "worker"
    profiles_nodes = True

    def __init__(self, command: str, runtime: RuntimeSpec | None = None, protocol: TimingProtocol | None = None,
                 retries: int = 2, start_timeout_s: float = 120.0) -> None:
        super().__init__(protocol)
        self.command = command
        self.argv = shlex.split(command)
        if not self.argv:
            raise DeviceError("empty --runner command", "e.g. --runner 'ssh user@board hwprune worker'")
        spec = runtime or RuntimeSpec("onnxruntime")
        self.settings = {"runtime": spec.name, "threads": spec.threads, "level": spec.graph_optimization_level,
                         "provider": spec.provider}
        self.retries, self.start_timeout_s = retries, start_timeout_s
        self.proc: subprocess.Popen | None = None
        self._buf = b""
        self._described: dict = {}

    # -- process handling ----------------------------------------------------------------
    def _start(self) -> None:
        self.close()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, env={**os.environ})
        except OSError as exc:
            raise DeviceError(f"cannot start runner '{self.command}': {exc}") from exc
        self._buf = b""
        hello = self._read(self.start_timeout_s)
        if hello.get("hwprune_worker") != PROTOCOL_VERSION:
            raise DeviceError(f"runner '{self.command}' did not answer as hwprune worker v{PROTOCOL_VERSION}")
        # settings live in the worker process: send them on every (re)start
        self._send({"cmd": "describe", **self.settings})
        self._described = self._read(self.start_timeout_s)

    def _send(self, obj: dict) -> None:
        assert self.proc and self.proc.stdin
        try:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise DeviceError(f"runner '{self.command}' went away") from exc

    def _read(self, timeout_s: float) -> dict:
        assert self.proc and self.proc.stdout
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        try:
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceTimeoutError(f"runner '{self.command}' sent nothing for {timeout_s:.0f} s")
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise DeviceError(f"runner '{self.command}' exited (code {self.proc.poll()})")
                self._buf += chunk
        finally:
            sel.close()
        line, _, self._buf = self._buf.partition(b"\n")
        return json.loads(line)

    def _request(self, obj: dict, timeout_s: float) -> dict:
        last: Exception | None = None
        for _ in range(self.retries + 1):
            try:
                if self.proc is None or self.proc.poll() is not None:
                    self._start()
                self._send(obj)
                return self._read(timeout_s)
            except (DeviceError, DeviceTimeoutError, json.JSONDecodeError) as exc:
                last = exc
                self.close()
        raise last if isinstance(last, Exception) else DeviceError("runner failed")

    # -- Runner contract -----------------------------------------------------------------
    def prepare(self) -> None:
        self._start()

    def describe(self) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        ans = self._described
        if "describe" not in ans:
            raise DeviceError(f"runner '{self.command}' cannot describe itself: {ans.get('error')}")
        return {"runner": self.name, "runner_command": self.command, **ans["describe"]}

    def measure(self, models: Iterable[MicroModel]) -> Iterator[Measurement]:
        proto = self.protocol
        for m in models:
            req = {"cmd": "measure", "key": m.key, "onnx_b64": base64.b64encode(m.onnx).decode(),
                   "protocol": {"warmup": proto.warmup, "repeats": proto.repeats,
                                "min_time_s": proto.min_time_s, "timeout_s": proto.timeout_s}}
            try:
                ans = self._request(req, proto.timeout_s + 30)
            except (DeviceError, DeviceTimeoutError) as exc:
                yield Measurement.failed(m.key, str(exc))
                continue
            if "measurement" in ans:
                yield Measurement(**ans["measurement"])
            else:
                yield Measurement.failed(m.key, str(ans.get("error")))

    def profile_nodes(self, onnx: bytes, runs: int) -> dict[str, float]:
        ans = self._request({"cmd": "profile_nodes", "onnx_b64": base64.b64encode(onnx).decode(),
                             "runs": runs}, self.protocol.timeout_s + 60)
        if "nodes" not in ans:
            raise DeviceError(f"runner '{self.command}' could not profile a model: {ans.get('error')}")
        return ans["nodes"]

    def close(self) -> None:
        if self.proc is not None:
            try:
                if self.proc.poll() is None:
                    try:
                        self._send({"cmd": "quit"})
                    except DeviceError:
                        pass
                    try:
                        self.proc.wait(timeout=2)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait()
            finally:
                self.proc = None
