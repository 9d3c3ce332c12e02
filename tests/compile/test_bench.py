"""``hwprune bench``: the standard stopwatch, in a fresh process, on a model or an artifact."""
from __future__ import annotations

import json

from hwprune.cli import main
from hwprune.compile import export_artifact


def _bench(capsys, *argv):
    code = main(["bench", *argv, "--repeats", "20", "--min-time", "0.2", "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else None), err


def test_bench_times_onnx_with_each_devices_runtime(make_run, capsys):
    onnx = make_run() / "model.onnx"
    for device, runtime in (("host", "onnxruntime"), ("host-tvm", "tvm")):
        code, r, err = _bench(capsys, str(onnx), "--device", device)
        assert code == 0, err
        assert r["runtime"] == runtime and r["runs"] >= 20 and 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
        assert "fresh process" in r["protocol"] and "no core pinning" in r["protocol"]


def test_bench_times_the_artifacts_library(make_run, tmp_path, capsys):
    art = tmp_path / "art"
    export_artifact(make_run(device="host-tvm"), "host-tvm", art, repeats=5, warmup=2, allow_slower=True)
    code, r, err = _bench(capsys, str(art), "--device", "host-tvm")
    assert code == 0, err
    assert r["runtime"] == "tvm" and r["path"].endswith("model.so") and r["median_ms"] > 0


def test_bench_refuses_in_one_line(tmp_path, capsys):
    for argv in ([str(tmp_path / "none.onnx")], [str(tmp_path)], [str(tmp_path / "m.onnx"), "--device", "pixel7"]):
        (tmp_path / "m.onnx").write_bytes(b"not onnx")
        code, _, err = _bench(capsys, *argv)
        assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_tvm_threads_do_not_pin_the_process():
    """Sizing TVM's thread pool leaves this process free to run on every core it had (a
    pinned process would carry the pin into every timing and child process after it)."""
    import os

    from hwprune.runtimes import tvm as _tvm

    before = os.sched_getaffinity(0)
    _tvm.set_num_threads(1)
    assert os.sched_getaffinity(0) == before
