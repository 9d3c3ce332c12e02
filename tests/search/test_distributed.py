"""Workers sharing one study, the same suite for every storage (PostgreSQL, SQLite, journal).

Workers are real ``hwprune search`` processes started with the same command (no --seed,
no --run-dir) on the demo model with a tiny synthetic task. PostgreSQL comes from
``$HWPRUNE_TEST_PG_URL`` (``.ci/run`` starts a private cluster); outside CI a private
cluster is started when the server binaries are installed, else those cases skip.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

from hwprune.cli import main
from hwprune.devices import LocalRunner
from hwprune.latency import LatencyTable
from hwprune.latency._profiler import profile_model
from hwprune.models import load_model
from hwprune.pruning import analyze
from hwprune.runtimes.timing import TimingProtocol
from hwprune.search._storage import mask_url, open_storage, resolve_storage

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
STORAGES = ["postgresql", "sqlite", "journal"]

_TASK = """
import os, time
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

num_classes = 10

def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.randn(n, 1, 28, 28, generator=g) + y.float()[:, None, None, None] / 5
    return TensorDataset(x, y)

class _Slow(Dataset):
    # HWPRUNE_TEST_SLOW_S per validation pass keeps a candidate in flight long enough
    def __init__(self, inner):
        self.inner = inner
    def __len__(self):
        return len(self.inner)
    def __getitem__(self, i):
        if i == 0:
            time.sleep(float(os.environ.get("HWPRUNE_TEST_SLOW_S", "0")))
        return self.inner[i]

def train_loader():
    return DataLoader(_data(128, 1), batch_size=32, shuffle=True,
                      generator=torch.Generator().manual_seed(0))

def val_loader():
    return DataLoader(_Slow(_data(64, 2)), batch_size=64)
"""


# --------------------------------------------------------------------------- fixtures

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory):
    url = os.environ.get("HWPRUNE_TEST_PG_URL")
    if url:
        yield url
        return
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins or (os.getuid() == 0 and not shutil.which("runuser")):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; CI sets HWPRUNE_TEST_PG_URL)")
    # not under pytest's tmp dir: the server's user must be able to reach the folder
    bindir, d = bins[-1].parent, Path(tempfile.mkdtemp(prefix="hwprune-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if as_user:
        shutil.chown(d, "postgres")
    pw, port = secrets.token_hex(8), _free_port()
    (d / "pw").write_text(pw + "\n")
    if as_user:
        shutil.chown(d / "pw", "postgres")
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(d / "data"), "-U", "hwprune",
                    f"--pwfile={d / 'pw'}", "-A", "scram-sha-256"], check=True, capture_output=True)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(d / "data"), "-l", str(d / "log"), "-w",
                    "-o", f"-p {port} -h 127.0.0.1 -k {d}", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://hwprune:{pw}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(d / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tables")
    lm = load_model("demo", pretrained=False)
    runner = LocalRunner(protocol=TimingProtocol(warmup=3, repeats=10, min_time_s=0.01))
    profile_model(analyze(lm), LatencyTable.load(d, "host", create=True), runner, progress=False)
    return d


@pytest.fixture(params=STORAGES)
def storage(request, tmp_path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return str(tmp_path / "study.journal")


def _cmd(tables: Path, tmp: Path, storage: str, name: str, trials: int, *extra: str) -> list[str]:
    task = tmp / "task.py"
    task.write_text(textwrap.dedent(_TASK))
    return [sys.executable, "-m", "hwprune", "search", "--device", "host", "--latency", "50%",
            "--trials", str(trials), "--storage", storage, "--study-name", name, "--tables", str(tables),
            "--task", str(task), "--finetune-steps", "1", "--finalists", "1", "--calibration-images", "32",
            "--val-images", "64", "--no-progress", "--heartbeat", "1", "--grace-period", "3",
            "--work-dir", str(tmp / "work"), "--format", "json", *extra]


def _env(slow_s: float) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "HWPRUNE_TEST_SLOW_S": str(slow_s)}


def _study(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(resolve_storage(storage)))


def _evaluated(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("evaluated")]


def _run_dirs(tmp: Path) -> list[Path]:
    return [p for p in (tmp / "work" / "runs").iterdir() if p.is_dir()]


def _check_winner_once(tmp: Path, outputs: list[dict], trials: int) -> dict:
    finished = [o for o in outputs if o.get("status") == "finished"]
    assert len(finished) == 1, [o.get("status") for o in outputs]  # written by one worker only
    (run,) = _run_dirs(tmp)  # same command, same folder; each worker below workers/
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["search"]["evaluated"] == trials
    assert summary["pruned"]["predicted_ms"] <= summary["budget"]["latency_ms"]
    assert len(list((run / "workers").glob("*/worker.json"))) == len(outputs)
    return summary


# --------------------------------------------------------------------------- the suite

def test_two_workers_share_the_trial_budget(storage, tables, tmp_path) -> None:
    name, trials = f"two-{secrets.token_hex(4)}", 5
    cmd = _cmd(tables, tmp_path, storage, name, trials, "--no-measure")
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=_env(0.3), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=170) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    outputs = [json.loads(o) for o, _ in outs]
    study = _study(storage, name)
    evaluated = _evaluated(study)
    assert len(evaluated) == trials  # the study's budget, not each worker's
    keys = [tuple(sorted(t.params.items())) for t in evaluated]
    assert len(set(keys)) == len(keys)  # no plan evaluated twice
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    workers = [json.loads(p.read_text()) for p in (_run_dirs(tmp_path)[0] / "workers").glob("*/worker.json")]
    assert len({w["seed"] for w in workers}) == 2 and sorted(w["index"] for w in workers) == [0, 1]
    assert sum(w["evaluated"] for w in workers) == trials
    _check_winner_once(tmp_path, outputs, trials)


def test_killed_worker_is_failed_requeued_and_replaced(storage, tables, tmp_path) -> None:
    name, trials = f"kill-{secrets.token_hex(4)}", 4
    cmd = _cmd(tables, tmp_path, storage, name, trials, "--no-measure")
    victim = subprocess.Popen(cmd, cwd=tmp_path, env=_env(3.0), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline, killed, survivor = time.time() + 120, None, None
    while time.time() < deadline and killed is None:  # the victim takes a slot first
        time.sleep(0.3)
        try:
            running = _study(storage, name).get_trials(states=(optuna.trial.TrialState.RUNNING,))
        except Exception:  # the study is not created yet
            continue
        mine = [t for t in running if f"-{victim.pid}-" in str(t.user_attrs.get("worker"))
                and t.user_attrs.get("claim") == t.number]
        if mine:
            killed = mine[0].number
            survivor = subprocess.Popen(cmd, cwd=tmp_path, env=_env(0.3), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
            os.kill(victim.pid, signal.SIGKILL)  # mid-candidate: validation takes 3 s
    assert killed is not None, "the victim never ran a candidate: " + victim.communicate(timeout=60)[1][-2000:]
    victim.wait(timeout=10)
    out, err = survivor.communicate(timeout=170)
    assert survivor.returncode == 0, err[-2000:]
    study = _study(storage, name)
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert study.trials[killed].state == optuna.trial.TrialState.FAIL
    assert len(_evaluated(study)) == trials
    assert any(t.system_attrs.get("failed_trial") == killed for t in study.trials)  # re-queued
    summary = _check_winner_once(tmp_path, [json.loads(out)], trials)
    rows = pd.read_csv(_run_dirs(tmp_path)[0] / "trials.csv")
    reason = rows.loc[rows["number"] == killed, "error"].iloc[0]
    assert "stopped sending heartbeats" in reason and "re-queued as trial" in reason
    assert summary["search"]["workers"] == 2


_LEASE_WORKER = """
import json, sys, time
from pathlib import Path
from hwprune.search._lease import device_lease_name, open_lease
from hwprune.search._storage import resolve_storage
lease = open_lease(resolve_storage(sys.argv[1]))
go = Path(sys.argv[2])
Path(sys.argv[3]).touch()  # ready
while not go.exists():
    time.sleep(0.01)
spans = []
for _ in range(3):
    with lease.hold(device_lease_name("host", local=True)) as held:
        t0 = time.time()
        while time.time() - t0 < 0.3:  # "timing" on the host: busy, like a benchmark
            pass
        spans.append([t0, time.time(), held.wait_s])
print(json.dumps(spans))
"""


def test_device_lease_one_measurement_at_a_time(storage, tmp_path) -> None:
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", _LEASE_WORKER, storage, str(go), str(r)], env=_env(0),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in ready]
    deadline = time.time() + 60
    while not all(r.exists() for r in ready) and time.time() < deadline:
        time.sleep(0.05)  # both have opened the lease and wait for the same start
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    spans = sorted(s for o, _ in outs for s in json.loads(o))
    assert len(spans) == 6
    for (a0, a1, _), (b0, b1, _) in zip(spans, spans[1:]):
        assert a1 <= b0, f"timing overlaps: {a0:.3f}-{a1:.3f} and {b0:.3f}-{b1:.3f}"
    assert sum(s[2] for s in spans) > 0.2  # the waiting is reported


# --------------------------------------------------------------------------- secrets and bad input

def _cli(capsys, args: list[str]) -> tuple[int, str]:
    """Runs the CLI in-process; returns the exit code and stderr (under --format json, a failure's
    stdout must be exactly one JSON object with the same message)."""
    code = main(args)
    cap = capsys.readouterr()
    if code != 0 and "--format" in args and args[args.index("--format") + 1] == "json":
        lines = cap.out.strip().splitlines()
        assert lines and json.loads(lines[-1])["exit_code"] == code, cap.out
    return code, cap.err


def _secret_url(pg_url: str, user: str, password: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(pg_url).set(username=user, password=password).render_as_string(hide_password=False)


def test_password_never_appears(pg_url, tables, tmp_path, capsys) -> None:
    import sqlalchemy as sa

    secret = "s3cr3t" + secrets.token_hex(6)
    user = f"u{secrets.token_hex(4)}"
    engine = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE {user} LOGIN PASSWORD '{secret}'"))
        conn.execute(sa.text(f"GRANT ALL ON SCHEMA public TO {user}"))
        conn.execute(sa.text(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {user}"))
        conn.execute(sa.text(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {user}"))
    url = _secret_url(pg_url, user, secret)
    assert secret in url and secret not in mask_url(url)
    cmd = _cmd(tables, tmp_path, "env:HWPRUNE_TEST_SECRET_URL", f"pw-{user}", 2)
    env = {**_env(0), "HWPRUNE_TEST_SECRET_URL": url}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-2000:]
    assert secret not in done.stdout + done.stderr
    for f in (tmp_path / "work").rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    summary = json.loads(next((tmp_path / "work").rglob("summary.json")).read_text())
    assert summary["search"]["storage"] == mask_url(url) and ":***@" in summary["search"]["storage"]
    # wrong credentials: one line, no secret, nothing created
    bad = _secret_url(pg_url, user, secret + "x")
    code, text = _cli(capsys, _cmd(tables, tmp_path, bad, "pw-bad", 2)[3:] + ["--run-dir", str(tmp_path / "bad")])
    assert code == 1 and "cannot open storage" in text and len(text.strip().splitlines()) == 1, text
    assert secret not in text and not (tmp_path / "bad").exists()


def test_unreachable_database_is_one_line(tables, tmp_path, capsys) -> None:
    url = f"postgresql://hw:topsecret@127.0.0.1:{_free_port()}/nodb"
    code, text = _cli(capsys, _cmd(tables, tmp_path, url, "x", 2)[3:] + ["--run-dir", str(tmp_path / "r")])
    assert code == 1 and len(text.strip().splitlines()) == 1, text
    assert "topsecret" not in text and "postgresql://hw:***@127.0.0.1" in text
    assert ("cannot open storage" in text) or ("pip install 'hwprune[postgres]'" in text)
    assert not (tmp_path / "r").exists()


def test_missing_driver_names_the_install_command(monkeypatch) -> None:
    import importlib.util

    from hwprune.errors import MissingDependencyError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("psycopg", "psycopg2") else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"pip install 'hwprune\[postgres\]'") as err:
        open_storage(resolve_storage("postgresql://u:hunter2@localhost/db"))
    assert "hunter2" not in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MissingDependencyError, match="pip install psycopg2-binary"):
        open_storage(resolve_storage("postgresql+psycopg2://u:hunter2@localhost/db"))


def test_storage_from_environment(monkeypatch, tmp_path) -> None:
    from hwprune.errors import ConfigError

    monkeypatch.setenv("HWPRUNE_X_URL", "postgresql://a:b@h/d")
    assert resolve_storage("env:HWPRUNE_X_URL").url == "postgresql://a:b@h/d"
    monkeypatch.delenv("HWPRUNE_X_URL")
    with pytest.raises(ConfigError, match="HWPRUNE_X_URL"):
        resolve_storage("env:HWPRUNE_X_URL")
    assert resolve_storage(str(tmp_path / "s.journal")).kind == "journal"


def test_study_name_with_another_budget_is_refused(storage, tables, tmp_path, capsys) -> None:
    name = f"other-{secrets.token_hex(4)}"
    base = _cmd(tables, tmp_path, storage, name, 1)[3:]
    from hwprune.search import Budget, PlanSearch
    from hwprune.latency import open_predictor

    analysis = analyze(load_model("demo", pretrained=False))
    predictor = open_predictor(analysis, "host", tables=tables)
    dense_ms = predictor.predict_ms(analysis.space.dense_plan())
    budget = Budget.parse("50%", None, dense_ms, analysis.cost.cost(analysis.space.dense_plan()).memory_bytes)
    PlanSearch(analysis, predictor, budget, lambda plan: 0.5, run_dir=tmp_path / "first", storage_url=storage,
               study_name=name, progress=False)  # the study exists, made for 50%
    args = [a if a != "50%" else "40%" for a in base] + ["--run-dir", str(tmp_path / "second")]
    code, text = _cli(capsys, args)
    assert code == 1 and len(text.strip().splitlines()) == 1 and "budget.latency_ms" in text, text
    assert not (tmp_path / "second").exists()


# --------------------------------------------------------------------------- --workers and --finish

def test_workers_flag_runs_processes_on_the_run_folder_journal(tables, tmp_path) -> None:
    trials, run = 4, tmp_path / "run"
    cmd = _cmd(tables, tmp_path, "-", "-", trials, "--no-measure", "--workers", "2", "--run-dir", str(run))
    cut = cmd.index("--storage")
    cmd = cmd[:cut] + cmd[cut + 4:]  # no --storage, no --study-name: the run folder's own journal
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(0.2), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["status"] == "finished" and out["run_dir"] == str(run)
    assert (run / "study.journal").is_file()
    workers = [json.loads(p.read_text()) for p in (run / "workers").glob("*/worker.json")]
    assert len(workers) == 2 and sum(w["evaluated"] for w in workers) == trials
    summary = json.loads((run / "summary.json").read_text())
    assert summary["search"]["evaluated"] == trials and summary["status"] == "finished"
    assert summary["pruned"]["predicted_ms"] <= summary["budget"]["latency_ms"]


def test_finish_after_the_workers(tables, tmp_path, capsys) -> None:
    storage, name = str(tmp_path / "study.journal"), f"fin-{secrets.token_hex(4)}"
    code, text = _cli(capsys, ["search", "--finish", "--storage", storage, "--study-name", name,
                               "--work-dir", str(tmp_path / "work")])
    assert code != 0 and len(text.strip().splitlines()) == 1  # no study yet: one line
    cmd = _cmd(tables, tmp_path, storage, name, 2, "--no-measure")
    done = subprocess.run(cmd, cwd=tmp_path, env=_env(0), capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = _run_dirs(tmp_path)
    before = (run / "summary.json").read_bytes()
    # the worker wrote the winner: --finish says where, and writes nothing again
    code = main(["search", "--finish", "--storage", storage, "--study-name", name, "--tables", str(tables),
                 "--work-dir", str(tmp_path / "work"), "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"] == "already-written" and out["run_dir"] == str(run), out
    assert (run / "summary.json").read_bytes() == before and _run_dirs(tmp_path) == [run]
