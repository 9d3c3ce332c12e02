"""Typed records of a latency table and the one codec that writes and reads them.

* :class:`Entry` - one row of ``<device>.csv.gz``: a kernel signature (``key``), its
  latency and how it was obtained (``source``, ``timing``, ``method``, ``samples_ms``...).
* :class:`CalibrationPoint` - one end-to-end timed model of ``<device>.json``.
* :class:`CalibrationRound` - end-to-end timings a profile journaled before it finished.
* :class:`TableMeta` - ``<device>.json``: schema, device, where and how it was measured,
  the models profiled, the calibration points, the channel block, the estimator.

Every field goes through :data:`ENTRY_FIELDS` (CSV cells and journal lines) or
:meth:`TableMeta.to_dict` / :meth:`TableMeta.from_dict` (JSON), so what is saved is what
is loaded, field for field. Tables written before schema 2 (no ``samples_ms`` or
``timing`` columns, journal lines without ``op``) are read by :func:`legacy_entry`.
"""
from __future__ import annotations

import datetime as _dt
import enum
import math
import statistics
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Literal

from hwprune.runtimes.kernels import SIG_FIELDS, KernelSig

__all__ = ["Source", "Timing", "Entry", "CalibrationPoint", "CalibrationRound", "TableMeta",
           "TABLE_SCHEMA", "READABLE_SCHEMAS", "COLUMNS", "now_iso", "entry_to_cells",
           "entry_from_cells", "entry_to_json", "entry_from_json", "legacy_entry", "check_entry",
           "calibration_round_from_json"]

#: Schema 2 adds the ``timing`` and ``samples_ms`` columns (schema 1 dropped samples on save).
TABLE_SCHEMA = 2
READABLE_SCHEMAS = (1, 2)


class Source(enum.StrEnum):
    """How an entry's latency was obtained."""

    MEASURED = "measured"
    INTERPOLATED = "interpolated"
    ESTIMATED = "estimated"


#: How a measured entry was timed: among its neighbours in whole models, or alone.
Timing = Literal["in_context", "micro"]
TIMINGS = ("in_context", "micro")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Entry:
    """One latency table row (times in milliseconds).

    ``samples_ms`` are the in-context medians, one per set of neighbours the kernel was
    timed among (``latency_ms`` is their median); empty for rows not timed in context and
    for rows of schema-1 tables (saved complete, without their samples). ``p10_ms``,
    ``p90_ms``, ``std_ms`` and ``raw_median_ms`` (before the harness overhead is taken
    off) describe micro-model timings; ``runs`` counts the timed runs.
    """

    key: str
    latency_ms: float
    source: Source
    method: str
    created: str = ""
    timing: Timing | None = None
    samples_ms: tuple[float, ...] = ()
    p10_ms: float | None = None
    p90_ms: float | None = None
    std_ms: float | None = None
    runs: int | None = None
    raw_median_ms: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Source(self.source))
        object.__setattr__(self, "latency_ms", float(self.latency_ms))
        object.__setattr__(self, "samples_ms", tuple(float(x) for x in self.samples_ms))
        if self.timing is not None and self.timing not in TIMINGS:
            raise ValueError(f"unknown timing '{self.timing}'; known: {', '.join(TIMINGS)}")

    @property
    def sig(self) -> KernelSig:
        return KernelSig.from_key(self.key)

    @property
    def in_context(self) -> bool:
        """Measured inside whole models (not alone, not interpolated or estimated)."""
        return self.source is Source.MEASURED and self.timing == "in_context"

    def with_sample(self, ms: float) -> "Entry":
        """This in-context entry with one more per-context median; latency their median."""
        got = sorted([*(self.samples_ms or (self.latency_ms,)), float(ms)])
        return replace(self, samples_ms=tuple(got), latency_ms=statistics.median(got), created=now_iso())


# ---- the entry codec: one (encode, decode) pair per field, for CSV cells and JSON ---------
def _opt_float(text: str) -> float | None:
    return None if text == "" else float(text)


def _opt_int(text: str) -> int | None:
    return None if text == "" else int(float(text))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # repr round-trips a float exactly
    return str(value)


#: field -> (to cell text, from cell text); JSON keeps native values except where noted
ENTRY_FIELDS: dict[str, tuple[Callable[[Any], str], Callable[[str], Any]]] = {
    "latency_ms": (_cell, float),
    "source": (str, Source),
    "method": (str, str),
    "created": (str, str),
    "timing": (_cell, lambda t: t or None),
    "samples_ms": (lambda xs: ";".join(repr(float(x)) for x in xs),
                   lambda t: tuple(float(x) for x in t.split(";")) if t else ()),
    "p10_ms": (_cell, _opt_float),
    "p90_ms": (_cell, _opt_float),
    "std_ms": (_cell, _opt_float),
    "runs": (_cell, _opt_int),
    "raw_median_ms": (_cell, _opt_float),
}
assert set(ENTRY_FIELDS) | {"key"} == {f.name for f in fields(Entry)}
#: CSV columns: the key, the signature spelled out (for pandas users), then the entry
COLUMNS = ["key"] + SIG_FIELDS + list(ENTRY_FIELDS)


def entry_to_cells(entry: Entry) -> dict[str, str]:
    """The CSV row of ``entry``: every column as text."""
    sig = {k: str(v) for k, v in entry.sig.as_row().items()}
    return {"key": entry.key, **sig,
            **{name: enc(getattr(entry, name)) for name, (enc, _) in ENTRY_FIELDS.items()}}


def entry_from_cells(cells: dict[str, str]) -> Entry:
    """The inverse of :func:`entry_to_cells` (signature columns are derived, not read)."""
    return Entry(cells["key"], **{name: dec(cells[name]) for name, (_, dec) in ENTRY_FIELDS.items()
                                  if name in cells})


def entry_to_json(entry: Entry) -> dict[str, Any]:
    """A journal line: ``{"op": "entry", ...}`` with the entry's fields as JSON values."""
    d = asdict(entry)
    d["source"] = entry.source.value
    d["samples_ms"] = list(entry.samples_ms)
    return {"op": "entry", **d}


def entry_from_json(d: dict[str, Any]) -> Entry:
    names = {f.name for f in fields(Entry)}
    return Entry(**{k: v for k, v in d.items() if k in names})


def _legacy_timing(source: str, method: str) -> Timing | None:
    """Schema 1 told how a measured row was timed only in its ``method`` text."""
    if source != Source.MEASURED:
        return None
    if method.startswith("in context"):
        return "in_context"
    return "micro" if method.startswith("micro model") else None


def legacy_entry(d: dict[str, Any]) -> Entry:
    """A schema-1 row (CSV cells or an old journal line) as an :class:`Entry`."""
    def num(name: str) -> float | None:
        v = d.get(name)
        if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
            return None
        return float(v)

    method = str(d.get("method") or "")
    samples = d.get("samples_ms")
    runs = num("runs")
    return Entry(str(d["key"]), float(d["latency_ms"]), Source(d["source"]), method,
                 str(d.get("created") or ""), _legacy_timing(str(d["source"]), method),
                 tuple(float(x) for x in samples.split(";")) if isinstance(samples, str) and samples else (),
                 num("p10_ms"), num("p90_ms"), num("std_ms"), None if runs is None else int(runs),
                 num("raw_median_ms"))


# ---- metadata --------------------------------------------------------------------------
@dataclass
class CalibrationPoint:
    """One model timed end to end: ``measured_ms`` (the standard stopwatch's median on the
    otherwise idle device, see :data:`hwprune.latency._calibration.CALIBRATION_MODEL`)
    against the sum of its kernels in the table (``kernel_sum_ms``, recomputed from
    ``keep`` when known); ``p90_ms`` is the 90th percentile of the same runs (what
    ``--latency-stat p90`` is predicted from)."""

    model: str
    kernel_sum_ms: float
    measured_ms: float
    plan: str | None = None
    keep: dict[str, int] | None = None
    max_ms: float | None = None
    rounds: int | None = None
    date: str | None = None
    p90_ms: float | None = None
    #: the lowest round (``max_ms`` the highest): how far the machine's speed swung
    min_ms: float | None = None
    #: the median round: the machine's typical speed during the build, what the drift
    #: check's re-timing is compared with (tables built before it: ``measured_ms``)
    median_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CalibrationPoint":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class CalibrationRound:
    """End-to-end timings (ms, by calibration plan name) of ``rounds`` rounds of a model,
    journaled as they finish so that a killed profile resumes from them."""

    model: str
    rounds: int
    times: dict[str, float]
    created: str = ""
    #: p90/median of each model's runs in these rounds
    spread: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"op": "calibration_round", **asdict(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CalibrationRound":
        return cls(str(d["model"]), int(d.get("rounds", 0)),
                   {k: float(v) for k, v in d.get("times", {}).items()}, str(d.get("created", "")),
                   {k: float(v) for k, v in d.get("spread", {}).items()})


@dataclass
class TableMeta:
    """``<device>.json``. ``measured_on`` holds the facts of the machine and runtime that
    measured the table (compared by :meth:`LatencyTable.check_fresh`); ``channel_block``
    the channel count the runtime pads convolutions to (what the grid and the predictor
    use); ``models`` what each profiled model contributed; ``extra`` keys this version
    does not know, kept as they were."""

    device: str
    schema_version: int = TABLE_SCHEMA
    created: str = field(default_factory=now_iso)
    #: the runtime that times this device's kernels (the device profile's ``runtime.name``)
    runtime: str | None = None
    updated: str | None = None
    measured_on: dict[str, Any] = field(default_factory=dict)
    timing_protocol: dict[str, Any] = field(default_factory=dict)
    runner_overhead_ms: float | None = None
    channel_block: int | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    calibration: list[CalibrationPoint] = field(default_factory=list)
    calibration_model: str | None = None
    estimator: dict[str, Any] | None = None
    #: per model: its reference model (see :mod:`hwprune.latency._drift`)
    reference: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "calibration":
                value = [p.to_dict() for p in value]
            if f.name != "extra" and value is not None:
                d[f.name] = value
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TableMeta":
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        known["calibration"] = [CalibrationPoint.from_dict(p) for p in d.get("calibration", [])]
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    @property
    def runtime_name(self) -> str | None:
        """The runtime this table was timed with: recorded, else the measuring facts'."""
        return self.runtime or (self.measured_on or {}).get("runtime") or None

    def get(self, name: str, default: Any = None) -> Any:
        """Dict-style read (``meta.get("models", {})``) for code written against the JSON."""
        if name in {f.name for f in fields(self)} - {"extra"}:
            value = getattr(self, name)
            return default if value is None else value
        return self.extra.get(name, default)


# ---- validation of what a journal hands back ---------------------------------------------
def _finite_at_least_0(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def check_entry(entry: Entry) -> None:
    """Raise ValueError unless ``entry`` can stand in a table: a parsable kernel key, a
    finite latency >= 0, finite statistics, and a measured row timed at least once."""
    try:
        KernelSig.from_key(entry.key)
    except (KeyError, ValueError, IndexError) as exc:
        raise ValueError(f"kernel key {entry.key!r} is malformed") from exc
    if not _finite_at_least_0(entry.latency_ms):
        raise ValueError(f"latency_ms {entry.latency_ms!r} of {entry.key} is not a finite number >= 0")
    for name in ("p10_ms", "p90_ms", "std_ms", "raw_median_ms"):
        value = getattr(entry, name)
        if value is not None and not _finite_at_least_0(value):
            raise ValueError(f"{name} {value!r} of {entry.key} is not a finite number >= 0")
    if not all(_finite_at_least_0(x) for x in entry.samples_ms):
        raise ValueError(f"samples_ms of {entry.key} are not all finite numbers >= 0")
    if entry.runs is not None and (isinstance(entry.runs, bool) or entry.runs < 1) \
            and entry.source is Source.MEASURED:
        raise ValueError(f"measured row {entry.key} was timed {entry.runs!r} times (at least 1 needed)")


def calibration_round_from_json(d: dict[str, Any]) -> CalibrationRound:
    """A journaled calibration round, checked (ValueError/TypeError/KeyError when malformed)."""
    rnd = CalibrationRound.from_json(d)
    if rnd.rounds < 1 or not isinstance(d.get("times"), dict):
        raise ValueError(f"calibration round of {rnd.model!r} is malformed")
    if not all(_finite_at_least_0(ms) and ms > 0 for ms in rnd.times.values()):
        raise ValueError(f"calibration round of {rnd.model!r} holds a time that is not a finite number > 0")
    return rnd
