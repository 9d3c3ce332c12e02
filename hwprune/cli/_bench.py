"""``hwprune bench``: time a model or an exported artifact with the standard stopwatch."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from hwprune.cli._fmt import emit_json, fmt_ms
from hwprune.cli._options import add_format, add_timing
from hwprune.errors import ConfigError, DeviceError

HELP = "time a model or an exported artifact the way a plain benchmark would"
DESCRIPTION = (
    "Time an ONNX model (with the device's runtime: onnxruntime, or TVM compiled with the schedule "
    "library) or an artifact folder written by 'hwprune export' (its library) in a fresh process, "
    "with the device profile's threads: warm-up runs, then single runs until --repeats runs and "
    "--min-time seconds have passed; prints the median and p90. The same stopwatch a user's own "
    "benchmark is; the device must be this machine.")


def add_parser(sub) -> None:
    s = sub.add_parser("bench", help=HELP, description=DESCRIPTION,
                       epilog="examples:\n  hwprune bench hwprune-work/runs/r/model.onnx --device host\n"
                              "  hwprune bench hwprune-work/runs/r/artifact-host-tvm --device host-tvm",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("path", metavar="MODEL_OR_ARTIFACT", help="a .onnx file or an artifact folder")
    s.add_argument("--device", default="host", help="device profile (default: host); must be this machine")
    add_timing(s, "model", warmup=10, repeats=100, min_time=2.0)
    add_format(s)
    s.set_defaults(func=run)


def _request(args: argparse.Namespace, profile) -> dict:
    path = Path(args.path)
    if path.is_dir():
        meta_path = path / "metadata.json"
        if not meta_path.is_file():
            raise ConfigError(f"'{path}' is a folder without metadata.json", "pass an artifact folder or a .onnx file")
        meta = json.loads(meta_path.read_text())
        deploys = meta.get("deploy_runtime") or profile.deploy_runtime
        lib = path / str((meta.get("library") or {}).get("file", "model.so"))
        path = lib if deploys == "tvm" else path / "model.onnx"
        spec = {"name": deploys, "threads": profile.threads}
    elif path.suffix == ".onnx" and path.is_file():
        spec = dict(profile.runtime)
    else:
        raise ConfigError(f"'{path}' is neither an .onnx file nor an artifact folder")
    return {"path": str(path.resolve()), "runtime": spec, "target": profile.tvm_target,
            "warmup": args.warmup, "runs": args.repeats, "min_time_s": args.min_time}


def run(args: argparse.Namespace) -> int:
    from hwprune.devices import load_profile

    profile = load_profile(args.device)
    if not profile.measurable_here:
        raise DeviceError(f"'{profile.name}' is not this machine; bench times models here",
                          f"time it on the device, e.g. {profile.measure_hint('MODEL')}")
    from hwprune.runtimes._bench import bench_in_fresh_process

    result = bench_in_fresh_process(_request(args, profile))
    if args.format == "json":
        emit_json(result)
        return 0
    print(f"{result['path']}: median {fmt_ms(result['median_ms'])} ms, p90 {fmt_ms(result['p90_ms'])} ms "
          f"({result['runs']} runs, {result['runtime']}, {result['threads']} thread(s))")
    print(f"protocol: {result['protocol']}")
    return 0
