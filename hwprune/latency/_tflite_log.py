"""Parse TensorFlow Lite ``benchmark_model`` logs into per-node timings.

Only the ``Run Order`` table is read (one row per node, in execution order); the
``Top by Computation Time`` and ``Summary by node type`` tables repeat the same
figures and are skipped. Times stay in the log's unit, milliseconds.

>>> from hwprune._paths import profiles_dir
>>> folder = profiles_dir() / "data" / "pixel1-tflite-mobilenetv1"
>>> runs = [parse_benchmark_log(p) for p in sorted(folder.glob("mobilenet_1.0_run*.txt"))]
>>> nodes = average_runs(runs)          # one NodeTiming per node, avg_ms over the runs
>>> len(nodes), round(sum(n.avg_ms for n in nodes), 1)
(31, 123.9)
"""
from __future__ import annotations

import csv
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from hwprune._io import atomic_write_with
from hwprune.errors import DataError

__all__ = ["NodeTiming", "parse_benchmark_log", "average_runs", "write_nodes_csv"]

_RUN_ORDER = "Run Order"
_COLUMNS = ("[node type]", "[start]", "[first]", "[avg ms]", "[%]", "[cdf%]", "[mem KB]",
            "[times called]", "[Name]")


@dataclass(frozen=True)
class NodeTiming:
    """One graph node: its position, TFLite op type, name and mean time per call.

    ``avg_ms`` is benchmark_model's ``[avg ms]`` (mean over the timed runs); after
    :func:`average_runs` it is the mean over several logs, ``std_ms`` their spread and
    ``runs`` how many logs contributed.
    """

    index: int
    node_type: str
    name: str
    avg_ms: float
    first_ms: float
    std_ms: float = 0.0
    runs: int = 1


def parse_benchmark_log(path: str | os.PathLike) -> list[NodeTiming]:
    """Per-node timings from one ``benchmark_model`` log (``Run Order`` table)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read benchmark log '{path}': {exc}") from exc
    start = next((i for i, ln in enumerate(lines) if _RUN_ORDER in ln and "=====" in ln), None)
    if start is None:
        raise DataError(f"benchmark log '{path}' has no '{_RUN_ORDER}' table",
                        "pass the output of benchmark_model --enable_op_profiling=true")
    header = lines[start + 1].split("\t")
    header = [h.strip() for h in header if h.strip()]
    if tuple(header) != _COLUMNS:
        raise DataError(f"benchmark log '{path}': unexpected Run Order columns {header}")
    nodes: list[NodeTiming] = []
    for ln in lines[start + 2:]:
        cells = [c.strip() for c in ln.split("\t") if c.strip()]
        if not cells:  # blank line ends the table
            break
        if len(cells) != len(_COLUMNS):
            raise DataError(f"benchmark log '{path}': malformed row {ln.strip()!r}")
        name = cells[8]
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        nodes.append(NodeTiming(index=len(nodes), node_type=cells[0], name=name,
                                avg_ms=float(cells[3]), first_ms=float(cells[2])))
    if not nodes:
        raise DataError(f"benchmark log '{path}': the Run Order table is empty")
    return nodes


def average_runs(runs: list[list[NodeTiming]]) -> list[NodeTiming]:
    """Average several logs of the same graph node by node (names must match)."""
    if not runs:
        raise DataError("no benchmark logs to average")
    ref = [(n.node_type, n.name) for n in runs[0]]
    for r in runs[1:]:
        if [(n.node_type, n.name) for n in r] != ref:
            raise DataError("benchmark logs describe different graphs (node lists differ)")
    out = []
    for i, (node_type, name) in enumerate(ref):
        avgs = [r[i].avg_ms for r in runs]
        out.append(NodeTiming(index=i, node_type=node_type, name=name,
                              avg_ms=statistics.fmean(avgs),
                              first_ms=statistics.fmean(r[i].first_ms for r in runs),
                              std_ms=statistics.stdev(avgs) if len(avgs) > 1 else 0.0,
                              runs=len(runs)))
    return out


def write_nodes_csv(nodes: list[NodeTiming], path: str | os.PathLike) -> None:
    """Write timings as CSV (index, node_type, name, avg_ms, std_ms, runs)."""
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            wr = csv.writer(fh)
            wr.writerow(["index", "node_type", "name", "avg_ms", "std_ms", "runs"])
            for n in nodes:
                wr.writerow([n.index, n.node_type, n.name, f"{n.avg_ms:.4f}", f"{n.std_ms:.4f}", n.runs])

    atomic_write_with(path, write)
