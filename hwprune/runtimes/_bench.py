"""The standard stopwatch: one model, a fresh process, the device's runtime settings.

What a user's own benchmark of a deployed model reports on an otherwise idle machine: load
the model, run ``warmup`` times untimed, then time single runs until at least ``runs``
runs and ``min_time_s`` seconds have passed, and report their median (and p10/p90). No
core pinning, no interleaving, no "best round": nothing a plain stopwatch would not do.

Run as ``python -m hwprune.runtimes._bench REQUEST_JSON`` (what ``hwprune bench`` does,
so every measurement starts in a fresh process); the last stdout line is the result JSON.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hwprune.runtimes import RuntimeSpec, random_inputs
from hwprune.runtimes.timing import TimingProtocol, time_runs

__all__ = ["bench_here", "bench_in_fresh_process", "stopwatch", "PROTOCOL_TEXT"]

PROTOCOL_TEXT = ("fresh process, {warmup} untimed runs, then single runs timed with a wall clock until at "
                 "least {runs} runs and {min_time_s:g} s; median, p10 and p90 of the runs; no core pinning")


def _session(request: dict[str, Any]) -> tuple[Any, str]:
    spec = RuntimeSpec.from_dict(request["runtime"], request.get("target"))
    path = Path(request["path"])
    if path.suffix == ".so":  # an exported TVM library
        from hwprune.runtimes import tvm as _tvm

        _tvm.set_num_threads(spec.threads)
        onnx = path.with_name("model.onnx")
        inputs = _tvm.onnx_inputs(onnx) if onnx.is_file() else [_tvm.OnnxInput(**i) for i in request["inputs"]]
        return _tvm.vm_session(path, inputs), "tvm"
    from hwprune.runtimes import open_runtime

    runtime = open_runtime(spec)
    return runtime.session(str(path)), runtime.name


def bench_here(request: dict[str, Any]) -> dict[str, Any]:
    """Time ``request["path"]`` (an ONNX model or a TVM library) in this process."""
    sess, runtime = _session(request)
    proto = TimingProtocol(warmup=int(request["warmup"]), repeats=int(request["runs"]),
                           min_time_s=float(request["min_time_s"]), timeout_s=float(request.get("timeout_s", 600)))
    m = time_runs(sess.call(random_inputs(sess.inputs)), proto, key=str(request["path"]))
    return {"path": request["path"], "runtime": runtime, "threads": request["runtime"].get("threads", 1),
            "median_ms": m.median_ms, "p10_ms": m.p10_ms, "p90_ms": m.p90_ms, "mean_ms": m.mean_ms,
            "runs": m.runs, "warmup": m.warmup,
            "protocol": PROTOCOL_TEXT.format(warmup=proto.warmup, runs=proto.repeats, min_time_s=proto.min_time_s)}


def bench_in_fresh_process(request: dict[str, Any]) -> dict[str, Any]:
    """:func:`bench_here` in a new Python process (what a user's own benchmark script is);
    ``DeviceError`` with the child's last line when it fails."""
    from hwprune.errors import DeviceError

    proc = subprocess.run([sys.executable, "-m", "hwprune.runtimes._bench", json.dumps(request)],
                          capture_output=True, text=True, timeout=float(request.get("timeout_s", 600)) + 300)
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    if proc.returncode != 0 or "median_ms" not in result:
        last = result.get("error") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeviceError(f"benchmarking '{request['path']}' failed: {last}")
    return result


def stopwatch(models: list[bytes | str], runtime: dict[str, Any], target: dict[str, Any] | None = None,
              warmup: int = 10, runs: int = 100, min_time_s: float = 2.0) -> list[dict[str, Any]]:
    """Each model (ONNX bytes or a path) timed with the standard protocol, each in its own
    fresh process, one after the other; ``runtime`` is a profile's ``runtime`` object."""
    out = []
    with tempfile.TemporaryDirectory(prefix="hwprune-bench-") as tmp:
        for i, model in enumerate(models):
            path = Path(model) if isinstance(model, str) else Path(tmp) / f"model{i}.onnx"
            if isinstance(model, bytes):
                path.write_bytes(model)
            out.append(bench_in_fresh_process({"path": str(path), "runtime": runtime, "target": target,
                                               "warmup": warmup, "runs": runs, "min_time_s": min_time_s}))
    return out


def main(argv: list[str]) -> int:
    from hwprune.errors import HwpruneError

    try:
        print(json.dumps(bench_here(json.loads(argv[0]))))
    except HwpruneError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
