"""``hwprune search``: per-group channel counts under a latency/memory budget."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hwprune.cli._checks import check_tables_to_read
from hwprune.cli._fmt import emit_json
from hwprune.cli._options import add_device, add_format, add_model, check_output_dir, float_in, int_at_least
from hwprune.errors import ConfigError

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
  hwprune search --device host --latency 40% --run-dir runs/a --resume"""


def add_parser(sub) -> None:
    s = sub.add_parser("search", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device(s)
    add_model(s, default="demo")
    g = s.add_argument_group("budget")
    g.add_argument("--latency", help="20ms, 0.02s or 50%% (of the dense model's predicted latency)")
    g.add_argument("--memory", help="weights + peak activations: 4MB, 512KB or 50%%")
    g = s.add_argument_group("search")
    g.add_argument("--trials", type=int_at_least(1), default=100, help="candidates to evaluate (default 100); plans "
                   "predicted over budget are recorded without costing an evaluation")
    g.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    g.add_argument("--sampler", choices=("tpe", "random", "nsga2"),
                   help="Optuna sampler (default: tpe; nsga2 with --pareto)")
    g.add_argument("--pareto", action="store_true", help="search the accuracy/latency front")
    g.add_argument("--run-dir", help="run directory (default WORK_DIR/runs/MODEL-DEVICE-TIMESTAMP)")
    g.add_argument("--resume", action="store_true", help="continue the study in --run-dir")
    g.add_argument("--storage", metavar="URL", help="shared Optuna storage so several processes/machines "
                   "work on one study, e.g. postgresql://user:pw@dbhost/hwprune or sqlite:///study.db")
    g.add_argument("--study-name", help="study name inside --storage (default derived from the run)")
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
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_format(s)
    s.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    if not args.latency and not args.memory:
        raise ConfigError("give a budget: --latency (e.g. 20ms, 0.02s, 50%) and/or --memory (e.g. 4MB)")
    if args.resume and args.run_dir is None:
        raise ConfigError("--resume needs --run-dir (the run to continue)")


def default_run_dir(args: argparse.Namespace) -> str:
    import time

    from hwprune._paths import runs_dir

    stem = Path(args.model.split(":")[-1] if ":" in args.model else args.model).stem
    return str(runs_dir(args.work_dir) / f"{stem}-{Path(args.device).stem}-{time.strftime('%Y%m%d-%H%M%S')}")


def run(args: argparse.Namespace) -> int:
    from hwprune._paths import resolve_table
    from hwprune.devices import load_profile
    from hwprune.search import run_search

    _check(args)
    check_tables_to_read(args)
    run_dir = args.run_dir or default_run_dir(args)
    check_output_dir(run_dir, "--run-dir")
    tables = resolve_table(load_profile(args.device).name, args.tables, args.work_dir)[0]
    result = run_search(
        model=args.model, weights=args.weights, input_shape=args.input_shape, device=args.device,
        latency=args.latency, memory=args.memory, trials=args.trials, seed=args.seed,
        run_dir=run_dir, resume=args.resume, storage_url=args.storage, study_name=args.study_name,
        pareto=args.pareto, sampler=args.sampler, finetune_steps=args.finetune_steps,
        finalists=args.finalists, candidate_finetune_steps=args.candidate_finetune_steps, lr=args.lr,
        data_dir=args.data, task=args.task, tables=tables, calibration_images=args.calibration_images,
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
