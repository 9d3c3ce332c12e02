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
    def send(obj: dict) -> None:
        stdout.write(json.dumps(obj) + "\n")
        stdout.flush()

    send({"hwprune_worker": PROTOCOL_VERSION, "version": __version__})
    settings = {"runtime": "onnxruntime", "threads": 1, "level": "all", "provider": "CPUExecutionProvider"}
    runtime = None
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError as exc:
            send({"error": f"bad request: {exc}"})
            continue
        cmd = msg.get("cmd")
        if cmd == "quit":
            break
        try:
            if cmd == "describe":
                settings.update({k: msg[k] for k in settings if k in msg})
                runtime = open_runtime(RuntimeSpec(settings["runtime"], int(settings["threads"]),
                                                   settings["level"], settings["provider"]))
                send({"describe": runtime.facts()})
            elif cmd == "profile_nodes":
                runtime = runtime or open_runtime(RuntimeSpec("onnxruntime"))
                send({"nodes": runtime.profile_nodes(base64.b64decode(msg["onnx_b64"]), int(msg.get("runs", 50)))})
            elif cmd == "measure":
                runtime = runtime or open_runtime(RuntimeSpec("onnxruntime"))
                proto = TimingProtocol(**msg.get("protocol", {}))
                res = runtime.time([base64.b64decode(msg["onnx_b64"])], proto, [msg["key"]])[0]
                send({"measurement": res.to_dict()})
            else:
                send({"error": f"unknown command {cmd!r}"})
        except Exception as exc:
            send({"error": f"{type(exc).__name__}: {exc}"})
    return 0


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
