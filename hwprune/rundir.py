"""The run directory: the one owner of the files a search leaves behind.

::

    RUN_DIR/
      study.journal   the Optuna study (append-only; a resume continues it)
      plan.json       the winning PruningPlan
      model.pt        the pruned, fine-tuned model's state_dict (rebuild: hwprune.search.load_pruned)
      model.onnx      the same model in ONNX (input "input", output "output")
      trials.csv      every trial: kept channels per group, prediction, feasibility, accuracy
      pareto.csv      pareto searches only: the accuracy/latency front of the scored trials
      trials.png      predicted latency vs validation accuracy, budget line, chosen model
      summary.md      the same as summary.json, for people
      summary.json    written last; "status": "finished" only once everything above exists

Every file is written atomically (:mod:`hwprune._io`). A search calls :meth:`RunDir.create`
(which refuses a directory holding a study unless it resumes), :meth:`RunDir.mark_running`,
the ``write_*`` methods and, last, :meth:`RunDir.finish`. Readers (``hwprune export``,
``load_pruned``) call :meth:`RunDir.open` and :meth:`RunDir.require_finished`.

>>> run = RunDir.open("runs/demo")                 # doctest: +SKIP
>>> run.require_finished().predicted_latency_ms    # doctest: +SKIP
0.2392
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from hwprune._io import atomic_write, atomic_write_with
from hwprune.errors import ConfigError

__all__ = ["RunDir", "RunSummary", "FINISHED", "RUNNING"]

RUNNING = "running"
FINISHED = "finished"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class RunSummary:
    """``summary.json``: what a run found, typed at the top level.

    ``status`` is "running" from the moment a search owns the directory until
    :meth:`RunDir.finish` writes "finished". The nested records (``dense``/``pruned``
    facts, ``search``, ``finetune``, ...) stay plain JSON dicts; keys this version does
    not know are kept in ``extra`` and written back unchanged.
    """

    status: str = RUNNING
    hwprune_version: str | None = None
    started: str | None = None
    finished: str | None = None
    device: str | None = None
    model: dict[str, Any] | None = None
    task: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None
    budget_text: str | None = None
    dense: dict[str, Any] | None = None
    pruned: dict[str, Any] | None = None
    predicted_latency_ms: float | None = None
    #: the same prediction without the drift rescale the search applied (the table's value)
    predicted_table_ms: float | None = None
    measured_latency_ms: float | None = None
    accuracy: dict[str, Any] | None = None
    fastest_reachable_ms: float | None = None
    table_kind: str | None = None
    calibration_scope: str | None = None
    plan_keep: dict[str, int] | None = None
    plan_dense: dict[str, int] | None = None
    search: dict[str, Any] | None = None
    finetune: dict[str, Any] | None = None
    onnx_max_rel_diff: float | None = None
    host: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wall_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "RunSummary":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in doc.items() if k in names}
        return cls(**known, extra={k: v for k, v in doc.items() if k not in names})


def model_file_sha256(spec: str | None) -> str | None:
    """sha256 of the file a ``path/to/file.py:factory`` spec names (None for zoo names,
    importable modules, or a file that cannot be read): what a run records so that
    loading it later refuses an edited model file."""
    import hashlib

    target = (spec or "").rpartition(":")[0]
    if not target.endswith(".py"):
        return None
    try:
        return hashlib.sha256(Path(target).read_bytes()).hexdigest()
    except OSError:
        return None


def _check_model_file(model: str, sha256: Any, run_path: Path) -> None:
    """Refuse a user model file whose content differs from the one the run recorded."""
    import hashlib

    target = model.rpartition(":")[0]
    if not sha256 or not target.endswith(".py"):
        return
    try:
        digest = hashlib.sha256(Path(target).read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(f"model file '{target}' cannot be read: {exc.strerror or exc}") from exc
    if digest != sha256:
        raise ConfigError(f"model file '{target}' is not the one run '{run_path}' pruned "
                          f"(sha256 {digest[:12]}..., the run recorded {str(sha256)[:12]}...)",
                          "pass the model file the search used")


class RunDir:
    """One run directory; see the module docstring for its files."""

    SUMMARY = "summary.json"
    REPORT = "summary.md"
    PLAN = "plan.json"
    MODEL = "model.pt"
    ONNX = "model.onnx"
    TRIALS = "trials.csv"
    PARETO = "pareto.csv"
    PLOT = "trials.png"
    JOURNAL = "study.journal"
    REQUIRED = (SUMMARY, ONNX, PLAN)  # what every reader of a finished run needs

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    # ---- opening -----------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, *, resume: bool = False,
               shared_study: bool = False) -> "RunDir":
        """The run directory of a new (or, with ``resume``, a continued) search.

        Refuses a directory that already holds a study journal unless ``resume``: a new
        search must not clobber a finished run. ``shared_study`` (the study lives in a
        database, not in the journal) skips that check. Nothing is created on disk yet.
        """
        run = cls(path)
        if not shared_study and run.has_study and not resume:
            raise ConfigError(f"run directory '{run.path}' already holds a search ({cls.JOURNAL})",
                              "pass --resume to continue it, or choose another --run-dir")
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        """An existing run directory, to read."""
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise ConfigError(f"run directory '{run.path}' is a file, not a folder",
                              "pass the folder `hwprune search` wrote")
        if not run.path.is_dir():
            raise ConfigError(f"run directory '{run.path}' does not exist",
                              "pass the folder `hwprune search` wrote")
        return run

    # ---- reading -----------------------------------------------------------------------
    @property
    def has_study(self) -> bool:
        """Whether the directory holds a search's study journal (with trials or a study)."""
        journal = self.file(self.JOURNAL)
        return journal.is_file() and journal.stat().st_size > 0

    def read_summary(self) -> RunSummary:
        path = self.file(self.SUMMARY)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"run directory '{self.path}' has no {self.SUMMARY}",
                              "run `hwprune search` to completion first") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"'{path}' is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"'{path}' holds a JSON {type(doc).__name__}, not a run summary")
        return RunSummary.from_dict(doc)

    def require_finished(self, *also: str) -> RunSummary:
        """The summary of a finished run holding :attr:`REQUIRED` and the files ``also``;
        otherwise a one-line :class:`ConfigError` saying what is missing or unfinished."""
        missing = [f for f in (*self.REQUIRED, *also) if not self.file(f).is_file()]
        if missing:
            raise ConfigError(f"run directory '{self.path}' is not a finished search run "
                              f"(missing {', '.join(missing)})", "run `hwprune search` to completion first")
        summary = self.read_summary()
        if summary.status != FINISHED:
            raise ConfigError(f"search in '{self.path}' has status '{summary.status}', not '{FINISHED}'",
                              "resume it with `hwprune search` (same run directory) before exporting")
        return summary

    def model_to_load(self, summary: RunSummary, model: str | None = None) -> tuple[str, tuple[int, ...]]:
        """The model spec and input shape to rebuild this run's model with, without
        importing anything the run directory names.

        A zoo model is rebuilt from the zoo. A user model must be given by the caller
        (``model``: ``path/to/file.py:factory`` or ``package.module:factory``): whoever can
        write a run directory must not choose code for its reader to run. When the run
        recorded the model file's sha256 (``summary.model["sha256"]``), a file that differs
        is refused before it is imported.
        """
        from hwprune.models import ZOO

        rec = summary.model if isinstance(summary.model, dict) else {}
        spec, shape = rec.get("spec"), rec.get("input_shape")
        try:
            shape = tuple(int(s) for s in shape) if shape is not None else None
        except (TypeError, ValueError):
            shape = None
        if not isinstance(spec, str) or not shape or len(shape) != 4 or min(shape) < 1:
            raise ConfigError(f"the summary of '{self.path}' does not name the model it pruned",
                              "rerun hwprune search into a new run directory")
        if model is None:
            if spec not in ZOO:
                raise ConfigError(f"run '{self.path}' pruned the user model {spec!r}, and hwprune does not "
                                  "import code a run directory names",
                                  "pass the model yourself, e.g. load_pruned(RUN, model='path/to/net.py:build')")
            return spec, shape
        _check_model_file(model, rec.get("sha256"), self.path)
        return model, shape

    def load_plan(self) -> Any:
        from hwprune.pruning import PruningPlan

        return PruningPlan.load(self.file(self.PLAN))

    def load_state_dict(self) -> dict[str, Any]:
        import torch

        return torch.load(self.file(self.MODEL), map_location="cpu", weights_only=True)

    # ---- writing -----------------------------------------------------------------------
    def mark_running(self, started: str | None = None) -> RunSummary:
        """Claim the directory for a search: from here on it is not "finished" until
        :meth:`finish` says so (an earlier summary is superseded)."""
        self.path.mkdir(parents=True, exist_ok=True)
        summary = RunSummary(status=RUNNING, started=started or _now())
        atomic_write(self.file(self.SUMMARY), json.dumps(summary.to_dict(), indent=2) + "\n")
        return summary

    def write_plan(self, plan: Any) -> Path:
        return atomic_write(self.file(self.PLAN), plan.to_json())

    def write_model(self, model: Any) -> Path:
        """``model``'s state_dict as ``model.pt`` (tensors moved to the CPU)."""
        import torch

        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        return atomic_write_with(self.file(self.MODEL), lambda tmp: torch.save(state, tmp))

    def write_onnx(self, onnx_bytes: bytes) -> Path:
        return atomic_write(self.file(self.ONNX), onnx_bytes)

    def write_rows(self, name: str, rows: Iterable[dict[str, Any]]) -> Path:
        """A CSV of ``rows`` (one dict per row; columns in first-seen order)."""
        import pandas as pd

        return atomic_write(self.file(name), pd.DataFrame(list(rows)).to_csv(index=False))

    def write_figure(self, name: str, figure: Any) -> Path:
        """A matplotlib figure as PNG."""
        return atomic_write_with(self.file(name), lambda tmp: figure.savefig(tmp, format="png"))

    def finish(self, summary: RunSummary, report_md: str | None = None) -> RunSummary:
        """Write ``summary.md`` (``report_md``), then ``summary.json`` with status
        "finished", last. Refuses when a file the summary lists is not on disk."""
        missing = [f for f in summary.files if f != self.REPORT and not self.file(f).is_file()]
        if missing:
            raise RuntimeError(f"cannot finish '{self.path}': {', '.join(missing)} not written")
        if report_md is not None:
            atomic_write(self.file(self.REPORT), report_md)
        elif self.REPORT in summary.files:
            raise RuntimeError(f"cannot finish '{self.path}': {self.REPORT} listed but not given")
        done = dataclasses.replace(summary, status=FINISHED, finished=summary.finished or _now())
        atomic_write(self.file(self.SUMMARY), json.dumps(done.to_dict(), indent=2) + "\n")
        return done

