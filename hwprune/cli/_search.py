"""``hwprune search``: per-group channel counts under a latency/memory budget."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hwprune.cli._checks import check_tables_to_read
from hwprune.cli._fmt import emit_json
from hwprune.cli._options import (add_device, add_format, add_keep_layers, add_latency_stat, add_model, add_rescale,
                                  check_output_dir, float_in, int_at_least, keep_layers)
from hwprune.errors import ConfigError, HwpruneError

HELP = "find per-group pruning ratios under a latency/memory budget"
DESCRIPTION = (
    "Optuna searches one pruning ratio per coupled channel group to maximize validation accuracy "
    "while the table-predicted latency and the memory (weights + peak activations) stay within "
    "budget. The best candidates are fine-tuned with the dense model as teacher and the winner is "
    "written to a run directory (default: WORK_DIR/runs/MODEL-DEVICE-TIMESTAMP).")
EPILOG = """examples:
  hwprune search --device pixel7 --latency 50%
  hwprune search --device host --latency 0.5ms --memory 2MB --trials 100
  hwprune search --device host --latency 40% --pareto
  hwprune search --device host --latency 40% --run-dir runs/a --resume

workers (one study, --trials counted for the study; run the same command on each machine):
  export HWPRUNE_STORAGE=postgresql://user:pw@dbhost/hwprune
  hwprune search --device host --latency 50% --trials 200 --storage env:HWPRUNE_STORAGE --study-name s1
  hwprune search --finish --storage env:HWPRUNE_STORAGE --study-name s1   # once, if no worker did
  hwprune search --device host --latency 50% --trials 40 --workers 2      # 2 processes here"""


def add_parser(sub) -> None:
    s = sub.add_parser("search", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device(s, required=False)
    add_model(s, default="demo")
    add_keep_layers(s)
    g = s.add_argument_group("budget")
    g.add_argument("--latency", help="20ms, 0.02s or 50%% (of the dense model's predicted latency)")
    g.add_argument("--memory", help="weights + peak activations: 4MB, 512KB or 50%%")
    add_latency_stat(g)
    g = s.add_argument_group("search")
    g.add_argument("--trials", type=int_at_least(1), default=100, help="candidates to evaluate (default 100); plans "
                   "predicted over budget are recorded without costing an evaluation")
    g.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    g.add_argument("--sampler", choices=("tpe", "random", "nsga2"),
                   help="Optuna sampler (default: tpe; nsga2 with --pareto)")
    g.add_argument("--pareto", action="store_true", help="search the accuracy/latency front")
    g.add_argument("--run-dir", help="run directory (default WORK_DIR/runs/MODEL-DEVICE-TIMESTAMP)")
    g.add_argument("--resume", action="store_true", help="continue the study in --run-dir")
    g = s.add_argument_group("workers (one study shared by several processes or machines)")
    g.add_argument("--storage", metavar="URL", help="shared Optuna storage: postgresql://user:pw@dbhost/db "
                   "(pip install 'hwprune[postgres]'), postgresql+psycopg2://..., sqlite:///study.db or "
                   "PATH.journal (one machine), or env:NAME to read the URL from $NAME "
                   "(default: $HWPRUNE_STORAGE when set)")
    g.add_argument("--study-name", help="study name inside --storage (default derived from the run)")
    g.add_argument("--workers", type=int_at_least(1), default=1, help="worker processes on this machine "
                   "(default 1); torch threads are split between them; without --storage they share "
                   "RUN_DIR/study.journal")
    g.add_argument("--finish", action="store_true", help="choose, fine-tune and write the winner of the "
                   "study in --storage/--study-name once (needs no budget flags)")
    g.add_argument("--heartbeat", type=int_at_least(1), default=10, metavar="S",
                   help="seconds between a running trial's heartbeats (default 10)")
    g.add_argument("--grace-period", type=int_at_least(1), default=60, metavar="S",
                   help="a trial without heartbeat this long is failed and re-queued (default 60)")
    g = s.add_argument_group("scoring and fine-tuning")
    g.add_argument("--calibration-images", type=int_at_least(1), default=512,
                   help="training images for adaptive batch-norm per candidate (default 512)")
    g.add_argument("--val-images", type=int_at_least(1), default=2000,
                   help="validation images scored per candidate (default 2000)")
    g.add_argument("--candidate-finetune-steps", type=int_at_least(0), default=0,
                   help="fine-tune steps per candidate before scoring (default 0: adaptive BN only)")
    g.add_argument("--finalists", type=int_at_least(1), default=3, help="best-scored candidates fine-tuned in full (plus "
                   "the uniform-width plan); the best on validation wins (default 3)")
    g.add_argument("--finetune-steps", type=int_at_least(0), default=300, help="KD fine-tune steps for each finalist (default 300)")
    g.add_argument("--lr", type=float_in(0.0, low_open=True), default=0.01, help="fine-tune learning rate (default 0.01)")
    g = s.add_argument_group("data")
    g.add_argument("--data", metavar="DIR", help="folder with the four Fashion-MNIST idx .gz files")
    g.add_argument("--task", metavar="MODULE", help="user data module (file.py or package.module) "
                                                    "with train_loader() and val_loader()")
    s.add_argument("--no-measure", action="store_true", help="do not time the winner end to end on this machine")
    add_rescale(s)
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_format(s)
    s.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    if args.finish:
        if not args.storage or not args.study_name:
            raise ConfigError("--finish needs --storage and --study-name (those the workers used)")
        return
    if not args.device:
        raise ConfigError("--device is required (see 'hwprune devices')")
    if not args.latency and not args.memory:
        raise ConfigError("give a budget: --latency (e.g. 20ms, 0.02s, 50%) and/or --memory (e.g. 4MB)")
    if args.resume and args.run_dir is None:
        raise ConfigError("--resume needs --run-dir (the run to continue)")
    if args.resume and (args.storage or args.workers > 1):
        raise ConfigError("--resume continues a run directory's own study; workers of a shared study "
                          "(--storage, --workers) rejoin it with the same command, without --resume")


def default_run_dir(args: argparse.Namespace) -> str:
    import hashlib
    import time

    from hwprune._paths import runs_dir

    stem = Path(args.model.split(":")[-1] if ":" in args.model else args.model).stem
    name = f"{stem}-{Path(args.device).stem}" if args.device else "study"
    if args.storage or args.workers > 1:
        # workers started with the same command on one machine share the study's folder
        # (each writes RUN_DIR/workers/ID/); a timestamp would split them
        from hwprune.search._storage import resolve_storage

        spec = resolve_storage(args.storage)
        key = "|".join(map(str, (spec.masked if spec else "", args.study_name, args.model, args.device,
                                 args.latency, args.memory, args.pareto, args.sampler, args.seed)))
        if args.finish:
            key = "|".join(map(str, (spec.masked if spec else "", args.study_name)))
        return str(runs_dir(args.work_dir) / f"{name}-study-{hashlib.sha256(key.encode()).hexdigest()[:10]}")
    return str(runs_dir(args.work_dir) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def _say(message: str) -> None:
    """The search's phases as they happen (stderr: stdout carries the result)."""
    print(f"hwprune: {message}", file=sys.stderr, flush=True)


def _search(args: argparse.Namespace, run_dir: str) -> dict:
    from hwprune._paths import resolve_table
    from hwprune.devices import load_profile
    from hwprune.search import SearchConfig, run_search
    from hwprune.search._distributed import finish_study, run_local_workers

    workers = {"heartbeat_s": args.heartbeat, "grace_period_s": args.grace_period}
    if args.finish:
        return finish_study(args.storage, args.study_name, run_dir, **workers,
                            **({"progress": False} if args.no_progress else {}))
    tables = resolve_table(load_profile(args.device).name, args.tables, args.work_dir)[0]
    kw = dict(
        model=args.model, weights=args.weights, input_shape=args.input_shape, device=args.device,
        latency=args.latency, memory=args.memory, trials=args.trials, seed=args.seed,
        run_dir=run_dir, resume=args.resume, storage_url=args.storage, study_name=args.study_name,
        pareto=args.pareto, sampler=args.sampler, finetune_steps=args.finetune_steps,
        finalists=args.finalists, candidate_finetune_steps=args.candidate_finetune_steps, lr=args.lr,
        data_dir=args.data, task=args.task, tables=tables, calibration_images=args.calibration_images,
        val_images=args.val_images, measure=not args.no_measure, rescale=not args.no_rescale,
        latency_stat=args.latency_stat, keep_layers=keep_layers(args),
        progress=not args.no_progress and sys.stderr.isatty(),
        log=None if args.format == "json" else _say)
    if args.workers > 1:
        log = kw.pop("log")
        return run_local_workers(SearchConfig(**kw, **workers), args.workers, log)
    return run_search(**kw, **workers)


def run(args: argparse.Namespace) -> int:
    import os

    if args.storage is None and os.environ.get("HWPRUNE_STORAGE"):
        args.storage = "env:HWPRUNE_STORAGE"  # the URL itself stays out of messages
    _check(args)
    check_tables_to_read(args)
    run_dir = args.run_dir or default_run_dir(args)
    check_output_dir(run_dir, "--run-dir")
    try:
        result = _search(args, run_dir)
    except HwpruneError:
        raise
    except Exception as exc:  # a database error mid-search: its text may hold the URL
        if not args.storage:
            raise
        from hwprune.search._storage import resolve_storage

        spec = resolve_storage(args.storage)
        raise HwpruneError(f"storage '{spec.masked}' failed: "
                           f"{spec.scrub(f'{type(exc).__name__}: {exc}').splitlines()[0]}") from None
    for w in result.get("warnings", []):
        print(f"hwprune: warning: {w}", file=sys.stderr)
    if args.format == "json":
        emit_json(result)
        return 0
    _print(args, result)
    return 0


def _print(args: argparse.Namespace, result: dict) -> None:
    if result.get("status") in ("worker-done", "already-written"):
        winner = result.get("winner") or {}
        if result["status"] == "worker-done":
            print(f"worker {result['worker']}: evaluated {result['evaluated_by_worker']} of the study's "
                  f"{result['study_evaluated']}/{result['trials']} candidates ({result['worker_json']})")
        if winner.get("status") == "written":
            print(f"winner written by {winner['by']} on {winner['machine']}: {winner['run_dir']}")
        else:
            print(f"winner not written yet: {winner.get('how', '')}")
        return
    summary_md = Path(result["run_dir"]) / "summary.md"
    if summary_md.is_file():
        print(summary_md.read_text().rstrip())
    device = args.device or result.get("device")
    print(f"\nrun directory: {result['run_dir']}  (export it: hwprune export {result['run_dir']} "
          f"--device {device})")
