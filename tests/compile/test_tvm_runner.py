"""TvmLocalRunner and TvmRpcRunner (loopback tracker + server started here)."""
from __future__ import annotations

import io
import math
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Iterator

import pytest
import torch
from torch import nn

from hwprune.devices._runner import MicroModel, TimingProtocol
from hwprune.devices._tvm_runner import TvmLocalRunner, TvmRpcRunner
from hwprune.errors import DeviceError

PROTOCOL = TimingProtocol(warmup=5, repeats=30, min_time_s=0.05, timeout_s=120.0)
HOST = {"kind": "llvm", "mcpu": "native"}


def micro_conv(cin: int = 16, cout: int = 16, size: int = 14) -> MicroModel:
    """One conv kernel as the profiler sends it: input named "x"."""
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, 3, 1, 1).eval()
    buf = io.BytesIO()
    torch.onnx.export(conv, (torch.randn(1, cin, size, size),), buf, dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"])
    return MicroModel(f"conv3x3_{cin}_{cout}_{size}", buf.getvalue())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **env})


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)   # the server forks per session: kill its group
        proc.wait(10)


def _wait_for_key(tracker: str, key: str, timeout_s: float = 30.0) -> None:
    from hwprune.runtimes.tvm import import_tvm
    import_tvm()
    from tvm import rpc
    host, port = tracker.split(":")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            summary = rpc.connect_tracker(host, int(port)).summary()
            if any(key in str(s.get("key")) for s in summary.get("server_info", [])):
                return
        except Exception:  # tracker not up yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"RPC server '{key}' did not register")


@pytest.fixture
def rpc_server(request) -> Iterator[tuple[str, subprocess.Popen]]:
    """A loopback tracker and server; ``@pytest.mark.parametrize("rpc_server", [{...}],
    indirect=True)`` hands the server extra environment variables."""
    pytest.importorskip("tornado", reason="TVM's RPC tracker needs tornado")
    port = _free_port()
    tracker = _start(["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                      "--port-end", str(port + 1)])
    server = _start(["tvm.exec.rpc_server", "--tracker", f"127.0.0.1:{port}", "--key", "test",
                     "--host", "127.0.0.1"], **getattr(request, "param", {}))
    try:
        _wait_for_key(f"127.0.0.1:{port}", "test")
        yield f"127.0.0.1:{port}", server
    finally:
        _stop(server)
        _stop(tracker)


def test_local_runner_times_kernels_and_survives_a_bad_one() -> None:
    good = micro_conv()
    bad = MicroModel("broken", b"not onnx")
    with TvmLocalRunner(PROTOCOL, target=HOST) as runner:
        info = runner.describe()
        results = list(runner.measure([good, bad, good]))
    assert info["runtime"] == "tvm" and info["target"]["mcpu"] != "native"
    assert [m.key for m in results] == [good.key, "broken", good.key]
    assert results[0].error is None and 0 < results[0].median_ms < 1000
    assert results[0].runs == PROTOCOL.repeats and results[0].p10_ms <= results[0].p90_ms
    assert results[1].error and "ONNX" in results[1].error and math.isnan(results[1].median_ms)
    assert results[2].error is None                       # the run went on


def test_local_runner_kernel_timeout_fails_only_that_kernel() -> None:
    slow = micro_conv(256, 256, 112)  # seconds of compile and runs, even with the schedule library
    proto = TimingProtocol(warmup=1, repeats=3, min_time_s=0.0, timeout_s=0.5)
    t0 = time.monotonic()
    with TvmLocalRunner(proto, target=HOST, retries=0) as runner:
        (m,) = runner.measure([slow])
    assert m.error and "took over 0.5 s" in m.error
    assert time.monotonic() - t0 < 30


def test_rpc_runner_agrees_with_local_runner(rpc_server) -> None:
    tracker, _ = rpc_server
    model = micro_conv(32, 32, 28)
    with TvmLocalRunner(PROTOCOL, target=HOST) as local:
        (loc,) = local.measure([model])
    with TvmRpcRunner(tracker, "test", HOST, protocol=PROTOCOL) as remote:
        assert remote.describe()["key"] == "test" and remote.describe()["threads"] == 1
        (rem,) = remote.measure([model])
    assert loc.error is None and rem.error is None, (loc.error, rem.error)
    # same machine, same code: within noise of a shared 2-core box
    assert 0.5 < rem.median_ms / loc.median_ms < 2.0, (rem.median_ms, loc.median_ms)


@pytest.mark.parametrize("rpc_server", [{"TVM_NUM_THREADS": "2"}], indirect=True)
def test_rpc_runner_sizes_the_servers_thread_pool(rpc_server) -> None:
    """A server started with 2 threads times a 1-thread profile with 1 (and says so), and a
    2-thread one with 2: the table records the threads it was timed with."""
    from hwprune.runtimes.tvm import connect_rpc, remote_threads

    tracker, _ = rpc_server
    assert remote_threads(connect_rpc(tracker, "test")) == 2            # the server's own default
    with TvmRpcRunner(tracker, "test", HOST, protocol=PROTOCOL, threads=1) as remote:
        (m,) = remote.measure([micro_conv()])
        assert m.error is None and remote.describe()["threads"] == 1
    with TvmRpcRunner(tracker, "test", HOST, protocol=PROTOCOL, threads=2) as remote:
        assert remote.describe()["threads"] == 2


def test_rpc_dead_server_fails_fast(rpc_server) -> None:
    tracker, server = rpc_server
    model = micro_conv()
    proto = TimingProtocol(warmup=2, repeats=5, min_time_s=0.0, timeout_s=30.0)
    with TvmRpcRunner(tracker, "test", HOST, protocol=proto, retries=1, connect_timeout_s=5) as remote:
        (first,) = remote.measure([model])
        assert first.error is None
        _stop(server)
        t0 = time.monotonic()
        (after,) = remote.measure([model])
        assert after.error is not None and math.isnan(after.median_ms)
        assert time.monotonic() - t0 < 30
    t0 = time.monotonic()
    # the tracker may still list the dead server for a moment: either way, a quick DeviceError
    with pytest.raises(DeviceError, match="'test'"):
        TvmRpcRunner(tracker, "test", HOST, protocol=proto, connect_timeout_s=5).prepare()
    assert time.monotonic() - t0 < 15


def test_rpc_runner_bad_tracker_is_one_line_error() -> None:
    with pytest.raises(DeviceError, match="HOST:PORT"):
        TvmRpcRunner("localhost", "pixel7", HOST)
    runner = TvmRpcRunner(f"127.0.0.1:{_free_port()}", "pixel7", HOST, connect_timeout_s=2)
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="cannot reach RPC tracker"):
        runner.prepare()
    assert time.monotonic() - t0 < 90


def _tiny_model_file(tmp_path):
    f = tmp_path / "tiny.py"
    f.write_text("import torch.nn as nn\n"
                 "def build():\n"
                 "    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),\n"
                 "                      nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),\n"
                 "                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))\n"
                 "    m.input_shape = (1, 3, 24, 24)\n"
                 "    return m\n")
    return f"{f}:build"


def test_rpc_runner_builds_a_table_that_agrees_with_local(rpc_server, tmp_path) -> None:
    """A whole table through a loopback tracker, entry by entry against the local TVM runner.
    (A dead server failing fast is test_rpc_dead_server_fails_fast; resuming from the
    journal is runner-independent and tested in tests/latency/test_profiler.py.)"""
    import statistics

    from hwprune.pruning import analyze
    from hwprune.latency import LatencyTable, anchor_keys, profile_model
    from hwprune.models import load_model

    tracker, server = rpc_server
    a = analyze(load_model(_tiny_model_file(tmp_path)))
    proto = TimingProtocol(warmup=3, repeats=10, min_time_s=0.01, timeout_s=60.0)
    agreement = []
    # convs of 5-40 us (at 8x8 they took 1-4 us and one entry read 12x its local twin); the
    # head's kernels (0.1-2 us, the timer's floor) are compared in the total only. A second
    # pair of tables only when the first disagrees: a shared VM can run 2x slower for the
    # minute one table takes
    for attempt in range(2):
        with TvmLocalRunner(proto, target=HOST) as local:
            profile_model(a, LatencyTable.load(tmp_path / f"local{attempt}", "dev", create=True), local,
                          calibrate=False, progress=False)
        with TvmRpcRunner(tracker, "test", HOST, protocol=proto) as remote:
            rep = profile_model(a, LatencyTable.load(tmp_path / f"rpc{attempt}", "dev", create=True), remote,
                                calibrate=False, progress=False)
        assert rep.timed == len(anchor_keys(a, 5)) and rep.in_context == 0
        loc = LatencyTable.load(tmp_path / f"local{attempt}", "dev")
        rpc = LatencyTable.load(tmp_path / f"rpc{attempt}", "dev")
        assert loc.measured_keys() == rpc.measured_keys()
        assert rpc.meta.measured_on["runner"].startswith("tvm") and rpc.meta.measured_on["threads"] == 1
        keys = loc.measured_keys()
        ratios = [rpc.rows[k].latency_ms / loc.rows[k].latency_ms for k in keys if loc.rows[k].latency_ms > 0.005]
        total = sum(rpc.rows[k].latency_ms for k in keys) / sum(loc.rows[k].latency_ms for k in keys)
        agreement.append((statistics.median(ratios), total))  # (median entry ratio, total ratio)
        if all(0.67 < r < 1.5 for r in agreement[-1]):
            break
    else:
        raise AssertionError(agreement)
