"""``hwprune``: hardware-aware pruning from measured latency tables.

Each command parses and validates its flags, calls the library and prints. Errors a user
can cause print one line (``hwprune: error: ...``) and exit with code 1; ``--debug``
shows the traceback.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from hwprune import __version__
from hwprune.cli._fmt import emit_json, fmt_ms, human_bytes, human_count, table
from hwprune.errors import ConfigError, HwpruneError

EPILOG = """examples:
  hwprune models
  hwprune devices
  hwprune prune --model resnet18 --ratio 0.3 --out pruned/
  hwprune profile --device host --model resnet18
  hwprune latency --device host --model resnet18 --measure
  hwprune search --device pixel7 --latency 50%
  hwprune search --device host --latency 0.6ms --memory 2MB --trials 100
  hwprune export runs/demo-host --device host

Run 'hwprune COMMAND --help' for the flags of a command."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that point at --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


# ---- shared options ----------------------------------------------------------------------
def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="'json' prints one machine-readable object (default: text)")


def _add_model(p: argparse.ArgumentParser, required: bool = True, default: str | None = None) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", required=required and default is None, default=default,
                   help="zoo name (see 'hwprune models'), path/to/file.py:factory or "
                        "package.module:factory" + (f" (default: {default})" if default else ""))
    g.add_argument("--weights", help="a state_dict saved with torch.save(model.state_dict(), PATH)")
    g.add_argument("--input-shape", help="NxCxHxW, e.g. 1x3x224x224 (zoo models know theirs)")


def _add_device(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--device", required=required,
                   help="device profile name (see 'hwprune devices') or a profile .json file")
    p.add_argument("--tables", metavar="DIR",
                   help="latency table folder (default: $HWPRUNE_TABLES or the shipped latency_tables/)")


def _load(args: argparse.Namespace):
    from hwprune.models import load_model

    return load_model(args.model, args.weights, args.input_shape)


# ---- models --------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    from hwprune.models import ZOO
    from hwprune.pruning._cost import dense_params_macs

    rows = []
    for name, entry in ZOO.items():
        model = entry.factory().eval()
        params, macs = dense_params_macs(model, entry.input_shape)
        rows.append({"name": name, "input_shape": "x".join(map(str, entry.input_shape)),
                     "params": params, "macs": macs, "weights": entry.weights is not None,
                     "description": entry.description})
    if args.format == "json":
        emit_json(rows)
    else:
        table([[r["name"], r["input_shape"], human_count(r["params"]), human_count(r["macs"]),
                r["description"]] for r in rows], ["model", "input", "params", "MACs", "description"])
        print("\nUser models: --model path/to/file.py:factory --input-shape 1x3x224x224 [--weights W.pt]")
    return 0


# ---- devices -------------------------------------------------------------------------------
def cmd_devices(args: argparse.Namespace) -> int:
    from hwprune._paths import tables_dir
    from hwprune.devices import list_profiles, load_profile
    from hwprune.latency._table import LatencyTable

    rows = []
    directory = tables_dir(args.tables)
    for name in list_profiles():
        prof = load_profile(name)
        info: dict[str, Any] = {"name": name, "class": prof.device_class,
                                "runtime": prof.runtime.get("name"),
                                "deploy_runtime": prof.deploy_runtime,
                                "reach": prof.reach.get("method"), "table": "none", "models": [],
                                "entries": {}, "description": prof.description}
        if LatencyTable.exists(directory, name):
            try:
                t = LatencyTable.load(directory, name)
                info["table"] = t.kind
                info["models"] = sorted(t.meta.get("models", {}))
                info["entries"] = t.counts()
                if prof.measurable_here and t.measured_keys():
                    try:
                        t.check_fresh(prof.local_runtime().facts())
                    except HwpruneError as exc:
                        info["table"] = "stale"
                        info["stale_reason"] = str(exc)
            except HwpruneError as exc:
                info["table"] = "corrupt"
                info["error"] = str(exc)
        rows.append(info)
    if args.format == "json":
        emit_json(rows)
        return 0
    table([[r["name"], r["class"], r["runtime"], r["deploy_runtime"], r["table"],
            ", ".join(m.split("@")[0] for m in r["models"]) or "-"] for r in rows],
          ["device", "class", "timed with", "deploys with", "table", "models in table"])
    print(f"\nTables: {directory}. 'measured' = timed on the device; 'estimated' = analytic "
          "model (see 'hwprune profile --help' to measure a real device).")
    return 0


# ---- prune ---------------------------------------------------------------------------------
def cmd_prune(args: argparse.Namespace) -> int:
    import torch

    from hwprune.pruning import analyze
    from hwprune.onnx_export import check_onnx, export_onnx
    from hwprune.pruning import PruningPlan

    if (args.plan is None) == (args.ratio is None):
        raise ConfigError("give exactly one of --plan FILE or --ratio R")
    lm = _load(args)
    analysis = analyze(lm)
    space = analysis.space
    plan = PruningPlan.load(args.plan) if args.plan else space.uniform_plan(args.ratio)
    space.validate(plan)
    pruned = space.apply(plan)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plan.save(out / "plan.json")
    torch.save(pruned, out / "model.pt")
    torch.save(pruned.state_dict(), out / "model_state_dict.pt")
    export_onnx(pruned, lm.input_shape, out / "model.onnx")
    diff = check_onnx(pruned, out / "model.onnx", lm.input_shape)
    before, after = analysis.cost.cost(space.dense_plan()), analysis.cost.cost(plan)
    result = {"model": lm.model_id, "out": str(out), "onnx_check_rel_diff": diff,
              "before": before.to_dict(), "after": after.to_dict(),
              "groups": {g.name: {"dense": g.size, "keep": space.full_keep(plan)[g.name]}
                         for g in space.groups}}
    if args.format == "json":
        emit_json(result)
        return 0
    rows = []
    for label, key, f in (("parameters", "params", human_count), ("MACs", "macs", human_count),
                          ("weights", "weight_bytes", human_bytes),
                          ("peak activations", "peak_activation_bytes", human_bytes),
                          ("memory (weights + activations)", "memory_bytes", human_bytes)):
        b, a = result["before"][key], result["after"][key]
        rows.append([label, f(b), f(a), f"{a / b:.1%}" if b else "-"])
    table(rows, ["", "before", "after", "after/before"])
    print(f"\nwrote {out}/plan.json, model.pt (whole module), model_state_dict.pt, model.onnx "
          f"(onnxruntime matches torch: rel. diff {diff:.1e})")
    return 0


# ---- profile -------------------------------------------------------------------------------
def _runner_for(args: argparse.Namespace, profile):
    from hwprune.devices import runner_for
    from hwprune.runtimes.timing import TimingProtocol

    proto = TimingProtocol(warmup=args.warmup, repeats=args.repeats, min_time_s=args.min_time,
                           timeout_s=args.timeout)
    return runner_for(profile, proto, command=args.runner, rpc=args.rpc, key=args.key, threads=args.threads)


def cmd_profile(args: argparse.Namespace) -> int:
    from hwprune._paths import tables_dir
    from hwprune.pruning import analyze
    from hwprune.devices import load_profile
    from hwprune.latency._profiler import estimate_model, profile_model
    from hwprune.latency._table import LatencyTable

    profile = load_profile(args.device)
    lm = _load(args)
    analysis = analyze(lm, multiple=args.multiple)
    directory = tables_dir(args.tables)
    table = LatencyTable.load(directory, profile.name, create=True)
    runner = None if args.estimate else _runner_for(args, profile)
    if runner is None:
        from hwprune.devices._estimate import AnalyticEstimator

        est = AnalyticEstimator(profile)
        report = estimate_model(analysis, table, est)
        kind = f"ESTIMATED ({est.method})"
    else:
        with runner:
            report = profile_model(analysis, table, runner, anchors=args.anchors,
                                   calibrate=not args.no_calibrate,
                                   progress=not args.no_progress, rebuild=args.rebuild)
        kind = "measured"
        if report.stale_note:
            print(f"hwprune: warning: {report.stale_note}; measuring anew", file=sys.stderr)
    result = {**report.to_dict(), "kind": kind, "table": str(LatencyTable.paths(directory, profile.name)[0])}
    if args.format == "json":
        emit_json(result)
        return 0
    print(f"{profile.name} / {analysis.model_key}: {report.needed} kernel signatures in the pruning space")
    if runner is None:
        print(f"  {report.estimated} entries {kind}")
        print(f"  to measure the real device: {profile.measure_hint(args.model)}")
    else:
        print(f"  timed now: {report.timed}, already in the table: {report.reused}, "
              f"interpolated: {report.interpolated}, end-to-end calibration points: "
              f"{report.calibration_points}")
    print(f"  {report.seconds:.1f} s; table: {result['table']}")
    return 0


# ---- latency -------------------------------------------------------------------------------
def cmd_latency(args: argparse.Namespace) -> int:
    from hwprune.pruning import analyze
    from hwprune.devices import load_profile
    from hwprune.latency import open_predictor
    from hwprune.pruning import PruningPlan

    profile = load_profile(args.device)
    lm = _load(args)
    analysis = analyze(lm)
    plan = PruningPlan.load(args.plan) if args.plan else analysis.space.dense_plan()
    analysis.space.validate(plan)
    predictor = open_predictor(analysis, profile.name, args.tables)
    kernels = predictor.kernel_times(plan)
    predicted = predictor.predict_ms(plan)
    measured = None
    if args.measure:
        measured = measure_plan_ms(analysis, plan, profile, repeats=args.repeats)
    warning = estimated_warning(predictor.table, profile.name, args.model)
    result = {"device": profile.name, "model": lm.model_id, "table_kind": predictor.table.kind,
              "predicted_ms": predicted, "measured_ms": measured,
              "kernel_sum_ms": sum(k.latency_ms for k in kernels),
              "calibration": {"scale": predictor.scale, "offset_ms": predictor.offset,
                              "scope": predictor.calibration_scope},
              "kernels": [{"name": k.name, "key": k.key, "latency_ms": k.latency_ms,
                           "source": k.source} for k in kernels]}
    if warning:
        result["warning"] = warning
        print(f"hwprune: warning: {warning}", file=sys.stderr)
    if args.format == "json":
        emit_json(result)
        return 0
    table([[k.name, k.key.split("|")[0], _short_key(k.key), fmt_ms(k.latency_ms), k.source]
           for k in kernels], ["kernel", "op", "signature", "ms", "source"])
    print(f"\nsum of kernels {fmt_ms(result['kernel_sum_ms'])} ms; calibrated ({predictor.calibration_scope}: "
          f"x{predictor.scale:.3f} {predictor.offset:+.3f} ms) predicted end-to-end: {fmt_ms(predicted)} ms")
    if measured is not None:
        print(f"measured end-to-end: {fmt_ms(measured)} ms ({(predicted - measured) / measured:+.1%} error)")
    return 0


def _short_key(key: str) -> str:
    parts = key.split("|")[1:-1]
    return " ".join(p for p in parts if not p.endswith("=none") and p != "res=0")


def estimated_warning(table, device: str, model: str) -> str | None:
    from hwprune.devices import load_profile

    if table.kind in ("estimated", "mixed"):
        return (f"the '{device}' latency table is estimated by an analytic model, not measured; "
                f"measure the real device with: {load_profile(device).measure_hint(model)}")
    return None


def measure_plan_ms(analysis, plan, profile, repeats: int = 100) -> float:
    """End-to-end latency of the pruned model on this machine (onnxruntime): the lowest
    of 5 round medians, each round on every core in turn (see ``hwprune.runtimes.timing``)."""
    from hwprune.onnx_export import to_onnx_bytes

    if not profile.measurable_here:
        raise ConfigError(f"--measure needs the device at hand; '{profile.name}' is not this machine",
                          "measure with hwprune profile --runner/--rpc, or use --device host")
    pruned = analysis.space.apply(plan)
    return profile.local_runtime().measure_latencies([to_onnx_bytes(pruned, analysis.lm.input_shape)],
                                                     seconds=max(0.5, repeats / 200))[0]["median_ms"]


# ---- search / export / worker --------------------------------------------------------------
def cmd_search(args: argparse.Namespace) -> int:
    import time as _time

    from hwprune.search._run import run_search

    if not args.latency and not args.memory:
        raise ConfigError("give a budget: --latency (e.g. 20ms, 0.02s, 50%) and/or --memory (e.g. 4MB)")
    if args.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {args.trials}")
    if args.finalists < 1:
        raise ConfigError(f"--finalists must be at least 1, got {args.finalists}")
    run_dir = args.run_dir
    if run_dir is None:
        if args.resume:
            raise ConfigError("--resume needs --run-dir (the run to continue)")
        stem = Path(args.model.split(":")[-1] if ":" in args.model else args.model).stem
        run_dir = f"runs/{stem}-{Path(args.device).stem}-{_time.strftime('%Y%m%d-%H%M%S')}"
    result = run_search(
        model=args.model, weights=args.weights, input_shape=args.input_shape, device=args.device,
        latency=args.latency, memory=args.memory, trials=args.trials, seed=args.seed,
        run_dir=run_dir, resume=args.resume, storage_url=args.storage, study_name=args.study_name,
        pareto=args.pareto, sampler=args.sampler, finetune_steps=args.finetune_steps,
        finalists=args.finalists, candidate_finetune_steps=args.candidate_finetune_steps, lr=args.lr, data_dir=args.data,
        task=args.task, tables=args.tables, calibration_images=args.calibration_images,
        val_images=args.val_images, measure=not args.no_measure,
        progress=not args.no_progress and sys.stderr.isatty())
    for w in result.get("warnings", []):
        print(f"hwprune: warning: {w}", file=sys.stderr)
    if args.format == "json":
        emit_json(result)
        return 0
    summary_md = Path(result["run_dir"]) / "summary.md"
    if summary_md.is_file():
        print(summary_md.read_text().rstrip())
    print(f"\nrun directory: {result['run_dir']}  (export it: hwprune export {result['run_dir']} "
          f"--device {args.device})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import logging

    from hwprune.compile import export_artifact

    if args.tune_trials < 0:
        raise ConfigError(f"--tune-trials must be 0 or more, got {args.tune_trials}")
    if not args.debug:
        logging.getLogger("tvm").setLevel(logging.WARNING)  # MetaSchedule logs every task
    meta = export_artifact(args.run_dir, args.device, out_dir=args.out, tune_trials=args.tune_trials,
                           database_dir=args.tuning_db, allow_tar=args.allow_tar,
                           overwrite=args.overwrite, verify=not args.no_verify)
    warning = meta.get("warning")
    if warning:
        print(f"hwprune: warning: {warning}", file=sys.stderr)
    if args.format == "json":
        emit_json(meta)
        return 0
    out = meta.get("out_dir") or meta.get("artifact_dir") or args.out
    print(f"artifact: {out}")
    for k in ("device", "target", "library", "verification", "measured", "predicted_latency_ms"):
        if k in meta:
            print(f"  {k}: {meta[k] if not isinstance(meta[k], dict) else ', '.join(f'{a}={b}' for a, b in meta[k].items())}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from hwprune.devices._worker import serve

    return serve()


# ---- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hwprune", description=(
        "Hardware-aware channel pruning: search per-layer pruning ratios that maximize accuracy "
        "under a latency budget predicted from per-device latency tables, then compile the "
        "winner for the device."), epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"hwprune {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("models", help="list the model zoo with parameters and MACs")
    _add_format(s)
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("devices", help="list device profiles and their latency tables")
    s.add_argument("--tables", metavar="DIR", help="latency table folder")
    _add_format(s)
    s.set_defaults(func=cmd_devices)

    s = sub.add_parser("prune", help="prune a model with a plan or a uniform ratio",
                       description="Write the pruned model (.pt and .onnx) and its plan, and print "
                                   "parameters, MACs and memory before and after.",
                       epilog="example: hwprune prune --model resnet18 --ratio 0.3 --out pruned/",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model(s)
    s.add_argument("--plan", help="a plan.json (from hwprune search or an earlier prune)")
    s.add_argument("--ratio", type=float, help="prune every group by this fraction, in [0, 1)")
    s.add_argument("--out", required=True, help="output folder")
    _add_format(s)
    s.set_defaults(func=cmd_prune)

    s = sub.add_parser("profile", help="build or extend a device's latency table for a model",
                       description=(
                           "Time every kernel the model's pruning space can produce on a sparse grid "
                           "of channel counts (read from per-node profiles of whole pruned models "
                           "where the runner can, else one micro model per kernel; the rest "
                           "interpolated and marked so), calibrate against end-to-end runs, and "
                           "save the table. Resumes where a killed run "
                           "stopped. Devices that are not this machine are reached with --runner "
                           "(any command that starts 'hwprune worker' there, e.g. over ssh) or "
                           "--rpc (a TVM RPC tracker); without either they get an analytic estimate."),
                       epilog="examples:\n  hwprune profile --device host --model resnet18\n"
                              "  hwprune profile --device jetson-orin-nano --model demo "
                              "--runner 'ssh me@jetson hwprune worker'\n"
                              "  hwprune profile --device pixel7 --model demo --rpc 10.0.0.5:9190 --key pixel7",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_device(s)
    _add_model(s)
    s.add_argument("--runner", metavar="CMD", help="command that runs 'hwprune worker' on the device")
    s.add_argument("--rpc", metavar="HOST:PORT", help="TVM RPC tracker address")
    s.add_argument("--key", help="device key registered with the TVM RPC tracker")
    s.add_argument("--estimate", action="store_true", help="fill the table with analytic estimates")
    s.add_argument("--anchors", type=int, default=5, help="measured channel counts per group (default 5)")
    s.add_argument("--multiple", type=int, default=8, help="channel counts are multiples of this (default 8)")
    s.add_argument("--threads", type=int, help="override the profile's thread count")
    s.add_argument("--warmup", type=int, default=10, help="warm-up runs per kernel (default 10)")
    s.add_argument("--repeats", type=int, default=50, help="timed runs per kernel (default 50)")
    s.add_argument("--min-time", type=float, default=0.1, help="minimum timed seconds per kernel (default 0.1)")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds per kernel before giving up (default 60)")
    s.add_argument("--rebuild", action="store_true", help="discard the existing table and start over")
    s.add_argument("--no-calibrate", action="store_true", help="skip the end-to-end calibration runs")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_format(s)
    s.set_defaults(func=cmd_profile)

    s = sub.add_parser("latency", help="predict (and measure) a model's latency on a device",
                       epilog="example: hwprune latency --device host --model resnet18 --plan plan.json --measure",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_device(s)
    _add_model(s)
    s.add_argument("--plan", help="a plan.json; default: the dense model")
    s.add_argument("--measure", action="store_true", help="also measure end to end (host only)")
    s.add_argument("--repeats", type=int, default=100, help="timed runs for --measure (default 100)")
    _add_format(s)
    s.set_defaults(func=cmd_latency)

    s = sub.add_parser("search", help="find per-group pruning ratios under a latency/memory budget",
                       description=(
                           "Optuna searches one pruning ratio per coupled channel group to maximize "
                           "validation accuracy while the table-predicted latency and the memory "
                           "(weights + peak activations) stay within budget. The winner is "
                           "fine-tuned with the dense model as teacher and written to a run directory."),
                       epilog="examples:\n  hwprune search --device pixel7 --latency 50%\n"
                              "  hwprune search --device host --latency 0.5ms --memory 2MB --trials 100\n"
                              "  hwprune search --device host --latency 40% --pareto\n"
                              "  hwprune search --device host --latency 40% --run-dir runs/a --resume",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_device(s)
    _add_model(s, default="demo")
    s.add_argument("--latency", help="budget: 20ms, 0.02s or 50%% (of the dense model's predicted latency)")
    s.add_argument("--memory", help="budget for weights + peak activations: 4MB, 512KB or 50%%")
    s.add_argument("--trials", type=int, default=100,
                   help="candidates to evaluate (default 100); plans predicted over budget are "
                        "recorded without costing an evaluation")
    s.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    s.add_argument("--sampler", choices=("tpe", "random", "nsga2"),
                   help="Optuna sampler (default: tpe; nsga2 with --pareto)")
    s.add_argument("--run-dir", help="run directory (default runs/MODEL-DEVICE-TIMESTAMP)")
    s.add_argument("--resume", action="store_true", help="continue the study in --run-dir")
    s.add_argument("--storage", metavar="URL",
                   help="shared Optuna storage so several processes/machines work on one study, "
                        "e.g. postgresql://user:pw@dbhost/hwprune or sqlite:///study.db")
    s.add_argument("--study-name", help="study name inside --storage (default derived from the run)")
    s.add_argument("--pareto", action="store_true", help="search the accuracy/latency front")
    s.add_argument("--lr", type=float, default=0.01, help="fine-tune learning rate (default 0.01)")
    s.add_argument("--calibration-images", type=int, default=512,
                   help="training images for adaptive batch-norm per candidate (default 512)")
    s.add_argument("--val-images", type=int, default=2000,
                   help="validation images scored per candidate (default 2000)")
    s.add_argument("--no-measure", action="store_true",
                   help="do not time the winner end to end on the host")
    s.add_argument("--finetune-steps", type=int, default=300,
                   help="KD fine-tune steps for each finalist (default 300)")
    s.add_argument("--finalists", type=int, default=3,
                   help="best-scored candidates fine-tuned in full (plus the uniform-width plan); "
                        "the best on validation wins (default 3; 1: fine-tune the top one only)")
    s.add_argument("--candidate-finetune-steps", type=int, default=0,
                   help="fine-tune steps per candidate before scoring (default 0: adaptive BN only)")
    s.add_argument("--data", metavar="DIR", help="folder with the four Fashion-MNIST idx .gz files")
    s.add_argument("--task", metavar="MODULE", help="user data module (file.py or package.module) "
                                                    "with train_loader() and val_loader()")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_format(s)
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("export", help="compile a search's winner with TVM for a device",
                       epilog="example: hwprune export runs/demo-host --device host --tune-trials 64",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("run_dir", metavar="RUN", help="a finished run directory from hwprune search")
    s.add_argument("--device", help="device profile name (default: the run's device)")
    s.add_argument("--out", help="artifact folder (default RUN/artifact-DEVICE)")
    s.add_argument("--tune-trials", type=int, default=0,
                   help="MetaSchedule tuning trials in total, host CPU targets (default 0: untuned)")
    s.add_argument("--tuning-db", metavar="DIR",
                   help="tuning database shared across exports and pruned variants (records are reused)")
    s.add_argument("--allow-tar", action="store_true",
                   help="without a cross compiler, write a .tar of objects to link on the device")
    s.add_argument("--overwrite", action="store_true", help="replace an existing artifact folder")
    s.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison on the host")
    _add_format(s)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("worker", help="time kernels sent on stdin (used by profile --runner)")
    s.set_defaults(func=cmd_worker)
    return p


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--latency -5ms`` reaches the budget parser (and its clear message) instead of
    argparse reading ``-5ms`` as an unknown flag."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in ("--latency", "--memory", "--ratio") and i + 1 < len(argv) \
                and argv[i + 1][:1] == "-" and argv[i + 1][1:2].isdigit():
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if not args.debug:
        warnings.filterwarnings("ignore")
    try:
        return int(args.func(args) or 0)
    except HwpruneError as exc:
        if args.debug:
            raise
        print(f"hwprune: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hwprune: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
