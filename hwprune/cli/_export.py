"""``hwprune export``: compile a search's winner with TVM for a device."""
from __future__ import annotations

import argparse
import sys

from hwprune.cli._fmt import emit_json
from hwprune.cli._options import add_format, add_rescale, add_work_dir, check_output_dir, int_at_least

HELP = "compile a search's winner with TVM for a device"


def add_parser(sub) -> None:
    s = sub.add_parser("export", help=HELP, description=(
        "Compile the run's pruned ONNX model with TVM for the device's target and write an "
        "artifact folder (library, model, plan, metadata with checksums, a README that loads it). "
        "On this machine the library is also checked against onnxruntime and timed."),
        epilog="examples:\n  hwprune export hwprune-work/runs/demo-host-20261201-101500 --device host\n"
               "  hwprune export RUN --device pixel7 --allow-tar",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("run_dir", metavar="RUN", help="a finished run directory from hwprune search")
    s.add_argument("--device", help="device profile name (default: the run's device)")
    s.add_argument("--out", help="artifact folder (default RUN/artifact-DEVICE)")
    s.add_argument("--tune-trials", type=int_at_least(0), default=0,
                   help="MetaSchedule tuning trials in total, host CPU targets (default 0: untuned)")
    s.add_argument("--tuning-db", metavar="DIR", help="tuning database shared across exports and pruned "
                   "variants (default with --tune-trials: WORK_DIR/tuning-db/DEVICE)")
    s.add_argument("--allow-tar", action="store_true",
                   help="without a cross compiler, write a .tar of objects to link on the device")
    s.add_argument("--overwrite", action="store_true", help="replace an existing artifact folder")
    s.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison on the host")
    s.add_argument("--allow-slower", action="store_true",
                   help="keep an artifact that runs more than 10%% above the run's predicted latency "
                        "(by default that fails the export)")
    s.add_argument("--tables", metavar="DIR", help="your latency table folder (default: WORK_DIR/tables)")
    add_rescale(s)
    add_work_dir(s)
    add_format(s)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from hwprune._paths import tuning_db_dir
    from hwprune.compile import export_artifact

    from pathlib import Path

    from hwprune.rundir import RunDir

    RunDir.open(args.run_dir)  # a missing run, or a file, in one line before TVM loads
    check_output_dir(args.out or args.run_dir, "--out" if args.out else "RUN (the artifact goes inside)")
    if args.tuning_db:
        check_output_dir(args.tuning_db, "--tuning-db")
    if not args.debug:
        logging.getLogger("tvm").setLevel(logging.WARNING)  # MetaSchedule logs every task
    database = args.tuning_db
    if database is None and args.tune_trials:
        database = tuning_db_dir(Path(args.device or "run-device").stem, args.work_dir)
    meta = export_artifact(args.run_dir, args.device, out_dir=args.out, tune_trials=args.tune_trials,
                           database_dir=database, allow_tar=args.allow_tar,
                           overwrite=args.overwrite, verify=not args.no_verify,
                           allow_slower=args.allow_slower, rescale=not args.no_rescale,
                           tables=args.tables, work_dir=args.work_dir)
    if meta.get("warning"):
        print(f"hwprune: warning: {meta['warning']}", file=sys.stderr)
    if args.format == "json":
        emit_json(meta)
        return 0
    print(f"artifact: {meta.get('out_dir') or meta.get('artifact_dir') or args.out}")
    measured = meta.get("measured") or {}
    if measured.get("race"):
        print(f"  {measured['race']}")
    for k in ("device", "target", "library", "verification"):
        if k in meta:
            v = meta[k]
            print(f"  {k}: {v if not isinstance(v, dict) else ', '.join(f'{a}={b}' for a, b in v.items())}")
    print(f"  {_latency_line(measured.get('stopwatch'), meta.get('predicted_latency_ms'))}")
    print(f"  details: {Path(meta.get('artifact_dir') or args.out or args.run_dir) / 'metadata.json'}")
    return 0


def _latency_line(watch: dict | None, predicted: float | None) -> str:
    """``measured: 0.187 ms median (p90 0.203 ms; 4 fresh-process readings), predicted 0.170 ms (+9.5%)``."""
    if not watch:
        return ("measured: not timed here (the library is for another machine)" +
                (f"; predicted {predicted:.3f} ms" if isinstance(predicted, (int, float)) else ""))
    n = len(watch.get("readings_ms") or [1])
    text = (f"measured ({watch['runtime']}): {watch['median_ms']:.3f} ms median (p90 {watch['p90_ms']:.3f} ms; "
            f"fastest of {n} fresh-process reading{'s' if n > 1 else ''})")
    if isinstance(predicted, (int, float)) and predicted > 0:
        text += f", predicted {predicted:.3f} ms ({(watch['median_ms'] / predicted - 1) * 100:+.1f}%)"
    return text
