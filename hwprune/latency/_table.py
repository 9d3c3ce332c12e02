"""Latency tables: one per device, a CSV pandas can read plus a JSON of metadata.

``latency_tables/<device>.csv.gz`` (``pd.read_csv`` reads it as is) holds one row per kernel signature (``key``) with its
latency and how it was obtained (``source``: measured / interpolated / estimated, and
``method``). ``latency_tables/<device>.json`` records the schema version, the device, the
machine and runtime versions that measured it, the timing protocol, the models profiled,
and the calibration points. Writes are atomic (temp file + rename); measurements in
flight are appended to ``<device>.journal.jsonl`` and folded in on the next write, so a
killed profiler loses at most the kernel it was timing.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from hwprune.errors import StaleTableError, TableError
from hwprune.runtimes.kernels import SIG_FIELDS, KernelSig

__all__ = ["LatencyTable", "TABLE_SCHEMA", "SOURCES", "now_iso", "atomic_write_text"]

TABLE_SCHEMA = 1
SOURCES = ("measured", "interpolated", "estimated")
VALUE_COLUMNS = ["latency_ms", "p10_ms", "p90_ms", "std_ms", "runs", "source", "method", "created"]
COLUMNS = ["key"] + SIG_FIELDS + VALUE_COLUMNS
#: facts that must match for a measured table to describe this machine
FRESHNESS_FIELDS = ("cpu", "runtime", "runtime_version", "provider", "threads", "graph_optimization_level",
                    "channel_block")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class LatencyTable:
    device: str
    meta: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)   # key -> row
    directory: Path | None = None
    #: end-to-end calibration rounds a killed profile journaled (``kind: calibration_round``)
    pending_calibration: list[dict[str, Any]] = field(default_factory=list)

    # ---- files -------------------------------------------------------------------------
    @staticmethod
    def paths(directory: Path, device: str) -> tuple[Path, Path, Path]:
        return (directory / f"{device}.csv.gz", directory / f"{device}.json",
                directory / f"{device}.journal.jsonl")

    @classmethod
    def exists(cls, directory: Path, device: str) -> bool:
        csv, meta, journal = cls.paths(directory, device)
        return (csv.is_file() and meta.is_file()) or journal.is_file()

    @classmethod
    def load(cls, directory: Path, device: str, create: bool = False) -> "LatencyTable":
        csv, meta_path, journal = cls.paths(directory, device)
        if not (csv.is_file() and meta_path.is_file()):
            if create:
                table = cls(device, {"schema_version": TABLE_SCHEMA, "device": device,
                                     "created": now_iso(), "models": {}, "calibration": []},
                            {}, directory)
                table._replay(journal)
                return table
            raise TableError(f"no latency table for device '{device}' in {directory}",
                             f"build one with: hwprune profile --device {device} --model MODEL")
        fix = f"rebuild it with: hwprune profile --device {device} --model MODEL (after deleting {csv.name})"
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TableError(f"latency table metadata '{meta_path}' is corrupt: {exc}", fix) from exc
        if not isinstance(meta, dict) or meta.get("schema_version") != TABLE_SCHEMA:
            raise TableError(f"latency table '{meta_path}' has schema "
                             f"{meta.get('schema_version') if isinstance(meta, dict) else '?'}, "
                             f"this hwprune reads {TABLE_SCHEMA}", fix)
        try:
            df = pd.read_csv(csv, keep_default_na=False, na_values=[""])
        except Exception as exc:
            raise TableError(f"latency table '{csv}' is corrupt: {type(exc).__name__}: {exc}", fix) from exc
        missing = [c for c in ("key", "latency_ms", "source", "method") if c not in df.columns]
        if missing:
            raise TableError(f"latency table '{csv}' lacks columns {', '.join(missing)}", fix)
        lat = pd.to_numeric(df["latency_ms"], errors="coerce")
        bad = df["key"][lat.isna() | (lat < 0)].tolist()
        if bad:
            raise TableError(f"latency table '{csv}' has {len(bad)} invalid latencies "
                             f"(first: {bad[0]})", fix)
        bad_src = sorted(set(df["source"]) - set(SOURCES))
        if bad_src:
            raise TableError(f"latency table '{csv}' has unknown sources {bad_src}", fix)
        rows = {r["key"]: r for r in df.to_dict("records")}
        table = cls(device, meta, rows, directory)
        table._replay(journal)
        return table

    def _replay(self, journal: Path) -> None:
        if not journal.is_file():
            return
        with open(journal) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if isinstance(row, dict) and row.get("kind") == "calibration_round":
                    self.pending_calibration.append(row)
                elif isinstance(row, dict) and "key" in row and "latency_ms" in row:
                    self.rows[row["key"]] = row

    def append_journal(self, row: dict[str, Any]) -> None:
        """Record one finished measurement durably before the next one starts."""
        self._append(row)
        self.rows[row["key"]] = row

    def append_calibration_round(self, row: dict[str, Any]) -> None:
        """Record end-to-end calibration timings durably (folded in by the profile that
        finishes the calibration; a resumed profile starts from them)."""
        row = {**row, "kind": "calibration_round"}
        if self.directory is not None:
            self._append(row)
        self.pending_calibration.append(row)

    def _append(self, row: dict[str, Any]) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        journal = self.paths(self.directory, self.device)[2]
        with open(journal, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def save(self) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        csv, meta_path, journal = self.paths(self.directory, self.device)
        self.meta["updated"] = now_iso()
        self.meta["counts"] = self.counts()
        df = self.frame()
        tmp = csv.with_name(f".{csv.name}.{os.getpid()}.tmp")
        df.to_csv(tmp, index=False, compression={"method": "gzip", "mtime": 0})
        os.replace(tmp, csv)
        atomic_write_text(meta_path, json.dumps(self.meta, indent=2, default=str) + "\n")
        if journal.exists():
            journal.unlink()

    def archive(self) -> Path:
        """Move this table's files to ``stale/<device>-<date>.*``; returns the folder."""
        assert self.directory is not None
        dest = self.directory / "stale"
        dest.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        for src in self.paths(self.directory, self.device):
            if src.exists():
                os.replace(src, dest / f"{self.device}-{stamp}{''.join(src.suffixes)}")
        return dest

    # ---- content -----------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        records = []
        for key in sorted(self.rows):
            r = dict(self.rows[key])
            sig = KernelSig.from_key(key).as_row()
            records.append({"key": key, **sig, **{c: r.get(c) for c in VALUE_COLUMNS}})
        return pd.DataFrame(records, columns=COLUMNS)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in SOURCES}
        for r in self.rows.values():
            out[r["source"]] = out.get(r["source"], 0) + 1
        return out

    def lookup(self) -> dict[str, float]:
        return {k: float(r["latency_ms"]) for k, r in self.rows.items()
                if r.get("latency_ms") is not None and not math.isnan(float(r["latency_ms"]))}

    def put(self, key: str, latency_ms: float, source: str, method: str, **extra: Any) -> dict:
        if source not in SOURCES:
            raise ValueError(f"unknown source {source}")
        row = {"key": key, "latency_ms": float(latency_ms), "source": source, "method": method,
               "created": now_iso(), **extra}
        self.rows[key] = row
        return row

    def measured_keys(self) -> set[str]:
        return {k for k, r in self.rows.items() if r["source"] == "measured"}

    @property
    def kind(self) -> str:
        """'measured', 'estimated' or 'mixed' (by the sources of its entries)."""
        c = self.counts()
        if c.get("estimated") and (c.get("measured") or c.get("interpolated")):
            return "mixed"
        if c.get("estimated"):
            return "estimated"
        return "measured" if self.rows else "empty"

    # ---- provenance --------------------------------------------------------------------
    def check_fresh(self, facts: dict[str, Any]) -> None:
        """Raise StaleTableError when ``facts`` (this machine now) differ from the table's."""
        rec = self.meta.get("measured_on")
        if not rec:
            return
        diffs = [f"{k}: table {rec.get(k)!r}, now {facts.get(k)!r}" for k in FRESHNESS_FIELDS
                 if k in rec and k in facts and str(rec.get(k)) != str(facts.get(k))]
        if diffs:
            raise StaleTableError(
                f"latency table for '{self.device}' is stale ({'; '.join(diffs)})",
                f"re-measure with: hwprune profile --device {self.device} --model MODEL --rebuild")

    def record_model(self, model_id: str, input_shape: Iterable[int], **info: Any) -> None:
        models = self.meta.setdefault("models", {})
        key = f"{model_id}@{'x'.join(map(str, input_shape))}"
        models[key] = {**models.get(key, {}), **info, "date": now_iso()}
