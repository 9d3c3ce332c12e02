"""Workers on one PostgreSQL study: 1, 2 and 4 processes, candidates per minute and the
storage overhead per trial.

On a 2-core machine this measures correctness and overhead, not speed-up: every setting
must end with exactly ``--trials`` evaluated candidates, no plan evaluated twice, and the
winner written once. The storage overhead per trial is the worker's wall time in a trial
minus the time spent scoring the candidate (claim lease, storage reads and writes,
sampling), from the trial records.

    HWPRUNE_BENCH_PG_URL=postgresql://user:pw@127.0.0.1:5432/db \\
        python benchmarks/distributed_search.py --trials 8 --workers 1 2 4

Writes benchmarks/results/distributed_search.md and .csv.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"

TASK = """
import torch
from torch.utils.data import DataLoader, TensorDataset
num_classes = 10
def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    return TensorDataset(torch.randn(n, 1, 28, 28, generator=g) + y.float()[:, None, None, None] / 5, y)
def train_loader():
    return DataLoader(_data(256, 1), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
def val_loader():
    return DataLoader(_data(256, 2), batch_size=128)
"""


def _table(work: Path) -> Path:
    code = ("import torch; torch.set_num_threads(1)\n"
            "from hwprune.pruning import analyze\nfrom hwprune.devices import LocalRunner\n"
            "from hwprune.runtimes.timing import TimingProtocol\nfrom hwprune.latency import LatencyTable\n"
            "from hwprune.latency._profiler import profile_model\nfrom hwprune.models import load_model\n"
            f"profile_model(analyze(load_model('demo', pretrained=False)), LatencyTable.load({str(work / 'tables')!r}, "
            "'host', create=True), LocalRunner(protocol=TimingProtocol(warmup=3, repeats=10, min_time_s=0.01)), "
            "progress=False)\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return work / "tables"


def _one(url: str, workers: int, trials: int, work: Path, tables: Path) -> dict:
    import optuna

    from hwprune.search._storage import open_storage, resolve_storage

    name = f"bench-{workers}-{secrets.token_hex(3)}"
    (work / "task.py").write_text(textwrap.dedent(TASK))
    cmd = [sys.executable, "-m", "hwprune", "search", "--device", "host", "--latency", "50%",
           "--trials", str(trials), "--storage", "env:HWPRUNE_BENCH_PG_URL", "--study-name", name,
           "--tables", str(tables), "--task", str(work / "task.py"), "--finetune-steps", "1",
           "--finalists", "1", "--calibration-images", "64", "--no-progress", "--no-measure",
           "--work-dir", str(work / f"w{workers}"), "--format", "json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    outs = [p.communicate() for p in procs]
    wall_s = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise SystemExit("\n".join(e[-1500:] for _, e in outs))
    study = optuna.load_study(study_name=name, storage=open_storage(resolve_storage(url)))
    trials_all = study.get_trials(deepcopy=False)
    done = [t for t in trials_all if t.state.name == "COMPLETE" and t.user_attrs.get("evaluated")]
    keys = {tuple(sorted(t.params.items())) for t in done}
    spans = [t.datetime_start.timestamp() for t in done] + [t.datetime_complete.timestamp() for t in done]
    search_s = max(spans) - min(spans) if spans else float("nan")
    overhead = [t.duration.total_seconds() - t.user_attrs["score_s"] for t in done]
    written = sum(1 for o, _ in outs if json.loads(o).get("status") == "finished")
    return {"workers": workers, "trials": trials, "evaluated": len(done), "distinct_plans": len(keys),
            "proposed": len(trials_all), "winner_written": written, "wall_s": round(wall_s, 1),
            "search_s": round(search_s, 1), "candidates_per_min": round(60 * len(done) / search_s, 1),
            "overhead_ms_per_trial": round(1000 * sum(overhead) / len(overhead), 1),
            "mean_score_s": round(sum(t.user_attrs["score_s"] for t in done) / len(done), 2)}


def _markdown(df) -> list[str]:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return lines + ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    url = os.environ.get("HWPRUNE_BENCH_PG_URL")
    if not url:
        raise SystemExit("set HWPRUNE_BENCH_PG_URL=postgresql://user:pw@host:port/db")
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tables = _table(work)
        rows = [_one(url, n, args.trials, work, tables) for n in args.workers]
    df = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / "distributed_search.csv", index=False)
    md = ["# Distributed search: workers on one PostgreSQL study", "",
          f"demo model, `--latency 50% --trials {args.trials}`, tiny synthetic task, PostgreSQL 15 on "
          f"loopback, {os.cpu_count()} CPU cores shared with other jobs (correctness and overhead, "
          "not speed-up). `search_s`: first candidate start to last candidate end; overhead: "
          "trial wall time minus scoring time (claim lease, storage, sampling).", "",
          *_markdown(df), ""]
    (OUT / "distributed_search.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
