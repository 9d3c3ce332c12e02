"""Latency tables: one per device, a CSV pandas can read plus a JSON of metadata.

``latency_tables/<device>.csv.gz`` (``pd.read_csv`` reads it as is) holds one row per
kernel signature (``key``, spelled out in the signature columns) with its latency and how
it was obtained (:class:`~hwprune.latency.Entry`: ``source`` measured / interpolated /
estimated, ``timing`` in context or alone, ``method``, ``samples_ms``...).
``latency_tables/<device>.json`` (:class:`~hwprune.latency.TableMeta`) records the schema
version, the device, the machine and runtime versions that measured it, the timing
protocol, the models profiled and the calibration points. Writes are atomic (temp file +
rename); measurements in flight are appended to ``<device>.journal.jsonl`` (one JSON
object per line, typed by its ``op``: ``entry`` or ``calibration_round``) and folded in on
the next write, so a killed profiler loses at most the measurement it was making.
"""
from __future__ import annotations

import copy
import csv
import datetime as _dt
import gzip
import io
import json
import math
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from hwprune._io import atomic_write, atomic_write_with
from hwprune.errors import StaleTableError, TableError
from hwprune.latency._lock import table_lock
from hwprune.latency._records import (COLUMNS, READABLE_SCHEMAS, TABLE_SCHEMA, CalibrationPoint, CalibrationRound,
                                      Entry, Source, TableMeta, calibration_round_from_json, check_entry,
                                      entry_from_cells, entry_from_json, entry_to_cells, entry_to_json,
                                      legacy_entry, now_iso)

__all__ = ["LatencyTable", "TABLE_SCHEMA", "SOURCES", "FRESHNESS_FIELDS"]

SOURCES = tuple(s.value for s in Source)
#: facts that must match for a measured table to describe this machine (a fact the
#: caller does not give, e.g. the probed channel block, is not compared)
FRESHNESS_FIELDS = ("cpu", "runtime", "runtime_version", "provider", "threads", "graph_optimization_level",
                    "channel_block", "schedules")


@dataclass
class LatencyTable:
    device: str
    meta: TableMeta = None  # type: ignore[assignment]  # filled in __post_init__
    rows: dict[str, Entry] = field(default_factory=dict)   # key -> entry
    directory: Path | None = None
    #: end-to-end calibration rounds a killed profile journaled
    pending_calibration: list[CalibrationRound] = field(default_factory=list)
    # what was read (a save merges only the changes since) and whether to replace the disk
    _base_rows: dict[str, Entry] = field(default_factory=dict, init=False, repr=False, compare=False)
    _base_meta: TableMeta = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]
    _replace: bool = field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.meta is None:
            self.meta = TableMeta(self.device)
        self._base_meta = TableMeta(self.device, created=self.meta.created)

    # ---- files -------------------------------------------------------------------------
    @staticmethod
    def paths(directory: Path, device: str) -> tuple[Path, Path, Path]:
        return (directory / f"{device}.csv.gz", directory / f"{device}.json",
                directory / f"{device}.journal.jsonl")

    @classmethod
    def exists(cls, directory: Path, device: str) -> bool:
        csv_path, meta, journal = cls.paths(directory, device)
        return (csv_path.is_file() and meta.is_file()) or journal.is_file()

    @classmethod
    def load(cls, directory: Path, device: str, create: bool = False, quiet: bool = False) -> "LatencyTable":
        """The table of ``device`` in ``directory`` with its journal folded in. A missing
        table is a :class:`TableError` unless ``create`` (then an empty one); so is a table
        whose metadata names another device. Invalid journal lines are skipped and
        reported on stderr (unless ``quiet``)."""
        directory = Path(directory)
        csv_path, meta_path, journal = cls.paths(directory, device)
        if not (csv_path.is_file() and meta_path.is_file()):
            if not create:
                raise TableError(f"no latency table for device '{device}' in {directory}",
                                 f"build one with: hwprune profile --device {device} --model MODEL")
            table = cls(device, TableMeta(device), {}, directory)
        else:
            meta = _read_meta(meta_path, device)
            _check_device(meta, meta_path, device)
            table = cls(device, meta, _read_rows(csv_path, meta.schema_version, device), directory)
        table._replay(journal, quiet)
        table._snapshot()
        return table

    def _snapshot(self) -> None:
        """Remember what was read, so that a save merges only what this process changed."""
        self._base_rows = dict(self.rows)
        self._base_meta = copy.deepcopy(self.meta)

    def _replay(self, journal: Path, quiet: bool = False) -> None:
        if not journal.is_file():
            return
        bad: list[str] = []
        with open(journal) as f:
            for n, line in enumerate(f, 1):
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError:
                    if line.endswith("\n"):  # a complete line that is not JSON (a cut last line is a kill)
                        bad.append(f"line {n}: not JSON")
                    continue
                problem = self._replay_line(doc)
                if problem:
                    bad.append(f"line {n}: {problem}")
        if bad and not quiet:
            print(f"hwprune: warning: skipped {len(bad)} invalid line(s) of {journal} ({bad[0]})",
                  file=sys.stderr)

    def _replay_line(self, doc: Any) -> str | None:
        """Fold one journal object in; returns what is wrong with it (None: folded)."""
        if not isinstance(doc, dict):
            return f"a JSON {type(doc).__name__}, not an object"
        op = doc.pop("op", None)
        try:
            if op == "calibration_round" or doc.get("kind") == "calibration_round":
                self.pending_calibration.append(calibration_round_from_json(doc))
            elif op == "entry" or (op is None and "key" in doc and "latency_ms" in doc):
                entry = entry_from_json(doc) if op == "entry" else legacy_entry(doc)
                check_entry(entry)
                self.rows[entry.key] = entry
            else:
                return f"unknown op {op!r}"
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def record(self, entry: Entry) -> Entry:
        """Put ``entry`` and journal it durably before the next measurement starts."""
        check_entry(entry)
        self._append(entry_to_json(entry))
        self.rows[entry.key] = entry
        return entry

    def append_calibration_round(self, rnd: CalibrationRound) -> None:
        """Record end-to-end calibration timings durably (folded in by the profile that
        finishes the calibration; a resumed profile starts from them)."""
        if self.directory is not None:
            self._append(rnd.to_json())
        self.pending_calibration.append(rnd)

    def _append(self, doc: dict[str, Any]) -> None:
        if self.directory is None:
            raise TableError(f"the '{self.device}' table has no folder to journal to")
        journal = self.paths(self.directory, self.device)[2]
        with table_lock(self.directory, self.device):  # a save rewrites the journal under the lock
            with open(journal, "a") as f:
                f.write(json.dumps(doc) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def reset(self) -> None:
        """Start the table over: the next save replaces what is on disk instead of merging."""
        self.rows.clear()
        self.pending_calibration.clear()
        self.meta.calibration = []
        self.meta.models = {}
        self._replace = True

    def save(self) -> None:
        """Merge this process's changes into the table on disk and write it (schema
        :data:`TABLE_SCHEMA`), under the table's lock.

        What is on disk (CSV, JSON and journal, possibly written by another process since
        this one read it) is read again; the entries, model records, calibration points and
        settings this process added or changed since it read the table replace theirs; the
        rest is kept. The journal lines now in the files are dropped; calibration rounds of
        models this process did not calibrate stay journaled.
        """
        if self.directory is None:
            raise TableError(f"the '{self.device}' table has no folder to save to")
        csv_path, meta_path, journal = self.paths(self.directory, self.device)
        with table_lock(self.directory, self.device):
            disk = self._on_disk()
            rows = _merge_rows(disk.rows, self.rows, self._base_rows)
            meta, calibrated = _merge_meta(disk.meta, self.meta, self._base_meta)
            meta.schema_version = TABLE_SCHEMA
            meta.updated = now_iso()
            self.rows, self.meta = rows, meta
            meta.counts = self.counts()
            atomic_write_with(csv_path, lambda tmp: _write_rows(tmp, [rows[k] for k in sorted(rows)]))
            atomic_write(meta_path, json.dumps(meta.to_dict(), indent=2, default=str) + "\n")
            keep = [] if self._replace else [r for r in disk.pending_calibration if r.model not in calibrated]
            if keep:
                atomic_write(journal, "".join(json.dumps(r.to_json()) + "\n" for r in keep))
            elif journal.exists():
                journal.unlink()
        self._replace = False
        self._snapshot()

    def _on_disk(self) -> "LatencyTable":
        """What a save merges into: the table on disk now (an empty one to replace it)."""
        if not self._replace:
            try:
                return LatencyTable.load(self.directory, self.device, create=True, quiet=True)
            except TableError as exc:  # damaged since this process read it: its copy is all there is
                print(f"hwprune: warning: {exc.args[0]}; writing this process's copy over it", file=sys.stderr)
        empty = LatencyTable(self.device, TableMeta(self.device), {}, self.directory)
        if not self._replace:
            empty.rows, empty.meta = dict(self._base_rows), copy.deepcopy(self._base_meta)
        return empty

    def archive(self) -> Path:
        """Move this table's files to ``stale/<device>-<date>.*``; returns the folder."""
        if self.directory is None:
            raise TableError(f"the '{self.device}' table has no folder")
        dest = self.directory / "stale"
        dest.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        for src in self.paths(self.directory, self.device):
            if src.exists():
                os.replace(src, dest / f"{self.device}-{stamp}{''.join(src.suffixes)}")
        return dest

    # ---- content -----------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """The table as the CSV holds it, one row per key (numbers as numbers)."""
        df = pd.DataFrame([entry_to_cells(self.rows[k]) for k in sorted(self.rows)], columns=COLUMNS)
        for col in ("cin", "cout", "groups", "h", "w", "latency_ms", "p10_ms", "p90_ms", "std_ms", "runs",
                    "raw_median_ms"):
            df[col] = pd.to_numeric(df[col], errors="coerce")
        return df

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in SOURCES}
        for e in self.rows.values():
            out[e.source.value] += 1
        return out

    def lookup(self) -> dict[str, float]:
        return {k: e.latency_ms for k, e in self.rows.items() if not math.isnan(e.latency_ms)}

    def put(self, key: str, latency_ms: float, source: str, method: str, **extra: Any) -> Entry:
        """Set one entry in memory (not journaled); ``extra`` are further :class:`Entry`
        fields (``timing``, ``samples_ms``, ``runs``...)."""
        if source not in SOURCES:
            raise ValueError(f"unknown source '{source}'; known: {', '.join(SOURCES)}")
        entry = Entry(key, float(latency_ms), Source(source), method, now_iso(), **extra)
        self.rows[key] = entry
        return entry

    def measured_keys(self) -> set[str]:
        return {k for k, e in self.rows.items() if e.source is Source.MEASURED}

    @property
    def kind(self) -> str:
        """'measured', 'estimated', 'mixed' or 'empty' (by the sources of its entries)."""
        c = self.counts()
        if c["estimated"] and (c["measured"] or c["interpolated"]):
            return "mixed"
        if c["estimated"]:
            return "estimated"
        return "measured" if self.rows else "empty"

    # ---- provenance --------------------------------------------------------------------
    def check_fresh(self, facts: dict[str, Any]) -> None:
        """Raise StaleTableError when ``facts`` (this machine now) differ from the table's.

        Only the :data:`FRESHNESS_FIELDS` both sides give are compared, so a runtime's
        cheap identity (no channel-block probe) is enough.
        """
        rec = self.meta.measured_on
        if not rec:
            return
        diffs = [f"{k}: table {rec.get(k)!r}, now {facts.get(k)!r}" for k in FRESHNESS_FIELDS
                 if k in rec and k in facts and str(rec.get(k)) != str(facts.get(k))]
        if diffs:
            raise StaleTableError(
                f"latency table for '{self.device}' is stale ({'; '.join(diffs)})",
                f"re-measure with: hwprune profile --device {self.device} --model MODEL --rebuild")

    def check_profile(self, profile) -> None:
        """Refuse (TableError) a table timed with another runtime than ``profile`` names
        (a table of another device copied in under this name)."""
        want = (profile.runtime or {}).get("name")
        have = self.meta.runtime_name
        if want and have and want != have:
            where = self.paths(self.directory, self.device)[1] if self.directory else self.device
            raise TableError(f"latency table '{where}' was timed with {have}, but device '{profile.name}' "
                             f"is timed with {want}: it belongs to another device",
                             f"remove it or profile anew: hwprune profile --device {profile.name} --model MODEL")

    def record_model(self, model_id: str, input_shape: Iterable[int], **info: Any) -> None:
        key = f"{model_id}@{'x'.join(map(str, input_shape))}"
        self.meta.models[key] = {**self.meta.models.get(key, {}), **info, "date": now_iso()}


# ---- merging a save into what is on disk -------------------------------------------------
def _merge_rows(disk: dict[str, Entry], mine: dict[str, Entry], base: dict[str, Entry]) -> dict[str, Entry]:
    """Disk's rows with this process's added or changed rows over them (and the rows it
    removed gone, unless another process changed them since)."""
    rows = dict(disk)
    for key, entry in mine.items():
        if base.get(key) != entry:
            rows[key] = entry
    for key in base.keys() - mine.keys():
        if rows.get(key) == base[key]:
            del rows[key]
    return rows


def _by_model(points: list[CalibrationPoint]) -> dict[str, list[CalibrationPoint]]:
    out: dict[str, list[CalibrationPoint]] = {}
    for p in points:
        out.setdefault(p.model, []).append(p)
    return out


_MERGED_APART = {"models", "calibration", "schema_version", "updated", "counts", "extra"}


def _merge_meta(disk: TableMeta, mine: TableMeta, base: TableMeta) -> tuple[TableMeta, set[str]]:
    """Disk's metadata with what this process changed over it: settings field by field,
    model records key by key, calibration points model by model. Also returns the models
    whose calibration this process (re)wrote."""
    out = copy.deepcopy(disk)
    for f in fields(TableMeta):
        if f.name not in _MERGED_APART and getattr(mine, f.name) != getattr(base, f.name):
            setattr(out, f.name, copy.deepcopy(getattr(mine, f.name)))
    for key, value in mine.extra.items():
        if base.extra.get(key) != value:
            out.extra[key] = copy.deepcopy(value)
    for key, record in mine.models.items():
        if base.models.get(key) != record:
            out.models[key] = copy.deepcopy(record)
    ours, theirs = _by_model(mine.calibration), _by_model(base.calibration)
    changed = {m for m in ours.keys() | theirs.keys() if ours.get(m) != theirs.get(m)}
    out.calibration = ([p for p in disk.calibration if p.model not in changed]
                       + [copy.deepcopy(p) for p in mine.calibration if p.model in changed])
    return out, changed


def _check_device(meta: TableMeta, path: Path, device: str) -> None:
    """Refuse a table whose metadata names another device (e.g. one copied in under this name)."""
    named = {meta.device, (meta.estimator or {}).get("device") or meta.device}
    other = sorted(n for n in named if n != device)
    if other:
        raise TableError(f"latency table '{path}' belongs to device '{other[0]}', not '{device}'",
                         f"remove {device}.csv.gz and {device}.json from {path.parent}, "
                         f"or use --device {other[0]}")


# ---- the files ---------------------------------------------------------------------------
def _fix(device: str, csv_name: str) -> str:
    return f"rebuild it with: hwprune profile --device {device} --model MODEL (after deleting {csv_name})"


def _read_meta(path: Path, device: str) -> TableMeta:
    fix = _fix(device, f"{device}.csv.gz")
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TableError(f"latency table metadata '{path}' is corrupt: {exc}", fix) from exc
    schema = doc.get("schema_version") if isinstance(doc, dict) else "?"
    if schema not in READABLE_SCHEMAS:
        raise TableError(f"latency table '{path}' has schema {schema}, this hwprune reads "
                         f"{', '.join(map(str, READABLE_SCHEMAS))}", fix)
    try:
        return TableMeta.from_dict(doc)
    except (TypeError, KeyError, ValueError) as exc:
        raise TableError(f"latency table metadata '{path}' is malformed: {exc}", fix) from exc


def _read_rows(path: Path, schema: int, device: str) -> dict[str, Entry]:
    """Entries of a CSV; schema 1 rows are read through :func:`legacy_entry`."""
    fix = _fix(device, path.name)
    try:
        with gzip.open(path, "rt", newline="") as f:
            records = list(csv.DictReader(f))
    except Exception as exc:  # gzip, csv and OS errors all mean: unreadable
        raise TableError(f"latency table '{path}' is corrupt: {type(exc).__name__}: {exc}", fix) from exc
    header = set(records[0]) if records else set()
    missing = [c for c in ("key", "latency_ms", "source", "method") if records and c not in header]
    if missing:
        raise TableError(f"latency table '{path}' lacks columns {', '.join(missing)}", fix)
    bad_src = sorted({r["source"] for r in records} - set(SOURCES))
    if bad_src:
        raise TableError(f"latency table '{path}' has unknown sources {bad_src}", fix)
    rows: dict[str, Entry] = {}
    for r in records:
        try:
            entry = entry_from_cells(r) if schema >= 2 else legacy_entry(r)
        except (TypeError, ValueError) as exc:
            raise TableError(f"latency table '{path}' has an invalid row for {r.get('key')}: {exc}", fix) from exc
        if not entry.latency_ms >= 0:
            raise TableError(f"latency table '{path}' has an invalid latency for {entry.key}", fix)
        rows[entry.key] = entry
    return rows


def _write_rows(path: Path, entries: list[Entry]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for e in entries:
        writer.writerow(entry_to_cells(e))
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buf.getvalue().encode())
