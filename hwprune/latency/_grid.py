"""The channel grid: which channel counts are measured and how the others are filled.

Every kernel template of a model varies with at most a couple of pruning groups. A table
times each template on a sparse grid of *anchor* channel counts per group (the smallest,
the largest and evenly spaced choices between), and fills every other reachable channel
count by (multi)linear interpolation between the measured anchors. Interpolated entries
are written as ``source=interpolated`` with the anchors named in ``method``, so nothing is
passed off as measured.

Runtimes that pad channels to a SIMD block (onnxruntime's NCHWc kernels: 16 channels on
AVX-512) make latency a staircase in the channel count: 56 channels cost what 64 do.
Anchors and interpolation therefore work on *padded* channel counts, ``ceil(c / block) *
block`` (counts under one block stay distinct), with the block the table records
(``channel_block``; 1 means no padding). The builder and the predictor both use this module.
"""
from __future__ import annotations

import itertools
from typing import Container, Iterator, Sequence

from hwprune.errors import TableError
from hwprune.latency._records import Source
from hwprune.latency._table import LatencyTable
from hwprune.pruning import Analysis
from hwprune.runtimes.kernels import KernelSig

__all__ = ["padded", "anchor_values", "keep_vector", "needed_keys", "anchor_keys", "bracket",
           "interpolations", "interpolate", "own_grid_values", "measured_lookup"]


def padded(c: int, block: int) -> int:
    """The channel count a blocked kernel really computes. Counts under one block stay
    as they are: onnxruntime reads such an input without reordering it (as it does the
    3 channels of an image), so 8 channels are cheaper than 16 there."""
    return c if c < block else -(-c // block) * block


def anchor_values(choices: Sequence[int], n: int, block: int = 1) -> list[int]:
    """Up to ``n`` channel counts to measure, spread evenly over the distinct padded sizes.

    Each padded size is represented by its block-aligned choice when there is one (else
    the largest choice that pads to it), so a measured anchor is the cost of whole blocks.
    """
    rep: dict[int, int] = {}
    for c in sorted(choices):
        p = padded(c, block)
        if p not in rep or c == p or rep[p] != p:
            rep[p] = c
    sizes = sorted(rep)
    if len(sizes) > n:
        idx = sorted({round(i * (len(sizes) - 1) / (n - 1)) for i in range(n)})
        sizes = [sizes[i] for i in idx]
    return [rep[p] for p in sizes]


def keep_vector(analysis: Analysis, assign: dict[int, int]) -> list[int]:
    """Channels kept per group (by index): the dense width except where ``assign`` says."""
    keep = [g.size for g in analysis.space.groups]
    for gi, v in assign.items():
        keep[gi] = v
    return keep


def needed_keys(analysis: Analysis) -> set[str]:
    """Every kernel signature any plan of the model's pruning space can produce."""
    out: set[str] = set()
    groups = analysis.space.groups
    for t in analysis.templates:
        axes = list(t.groups_used)
        for combo in itertools.product(*[groups[g].choices for g in axes]):
            out.add(t.sig(keep_vector(analysis, dict(zip(axes, combo)))).key)
    return out


def anchor_keys(analysis: Analysis, anchors: int, block: int = 1) -> dict[str, KernelSig]:
    """The signatures to time: each template at every combination of anchor values."""
    out = {}
    groups = analysis.space.groups
    for t in analysis.templates:
        axes = list(t.groups_used)
        for combo in itertools.product(*[anchor_values(groups[g].choices, anchors, block) for g in axes]):
            sig = t.sig(keep_vector(analysis, dict(zip(axes, combo))))
            out[sig.key] = sig
    return out


def bracket(values: Sequence[int], x: int, block: int = 1) -> tuple[int, int, float]:
    """Anchors ``lo <= x <= hi`` around ``x`` and the weight of ``hi``, in padded sizes."""
    px = padded(x, block)
    for lo, hi in zip(values, values[1:]):
        plo, phi = padded(lo, block), padded(hi, block)
        if plo <= px <= phi:
            return lo, hi, (px - plo) / (phi - plo) if phi > plo else 0.0
    if len(values) == 1 and padded(values[0], block) == px:
        return values[0], values[0], 0.0
    raise ValueError(f"{x} outside {values[0]}..{values[-1]}")


def _corners(t, analysis: Analysis, axes: list[int], brackets, lookup: dict[str, float]) -> tuple[float, list[str]]:
    """The weighted sum over the measured corners around one point, and the corners used."""
    total, used = 0.0, []
    for corner in itertools.product(*[(0, 1)] * len(axes)):
        w = 1.0
        assign = {}
        for (lo, hi, f), bit, g in zip(brackets, corner, axes):
            w *= f if bit else (1.0 - f)
            assign[g] = hi if bit else lo
        if w == 0.0:
            continue
        ckey = t.sig(keep_vector(analysis, assign)).key
        if ckey not in lookup:
            raise TableError(f"anchor kernel {ckey} was not measured; rerun hwprune profile")
        total += w * lookup[ckey]
        used.append("/".join(str(assign[g]) for g in axes))
    return total, used


def interpolations(analysis: Analysis, lookup: dict[str, float], anchors: int, block: int = 1,
                   only: Container[str] | None = None) -> Iterator[tuple[str, float, str]]:
    """``(key, ms, method)`` for every needed signature of the model that is not one of
    its own anchors (and is in ``only``, if given): multilinear in padded channel counts
    between the anchors around it.

    ``lookup`` must hold the model's anchor kernels; each key is yielded once.
    """
    groups = analysis.space.groups
    pad_note = f", channels padded to blocks of {block}" if block > 1 else ""
    done: set[str] = set()  # a key several templates share is computed once
    for t in analysis.templates:
        axes = list(t.groups_used)
        grids = [anchor_values(groups[g].choices, anchors, block) for g in axes]
        kind = "bi" if len(axes) == 2 else "multi" if len(axes) > 2 else ""
        for combo in itertools.product(*[groups[g].choices for g in axes]):
            if all(v in grid for v, grid in zip(combo, grids)):
                continue  # an anchor: measured
            key = t.sig(keep_vector(analysis, dict(zip(axes, combo)))).key
            if key in done or (only is not None and key not in only):
                continue
            done.add(key)
            brackets = [bracket(grid, v, block) for grid, v in zip(grids, combo)]
            total, used = _corners(t, analysis, axes, brackets, lookup)
            yield key, total, f"{kind}linear over measured channel grid ({', '.join(used)}){pad_note}"


def measured_lookup(table: LatencyTable) -> dict[str, float]:
    return {k: e.latency_ms for k, e in table.rows.items() if e.source is Source.MEASURED}


def interpolate(analysis: Analysis, table: LatencyTable, anchors: int, block: int = 1) -> int:
    """(Re)compute every needed signature that was not measured; returns how many.

    Interpolated rows are recomputed on every build (their anchors may have been
    re-timed); a row whose value and method did not change is left as it was.
    """
    lookup = measured_lookup(table)
    added = 0
    for key, ms, method in interpolations(analysis, lookup, anchors, block):
        if key in lookup:
            continue  # measured, in another model's build
        old = table.rows.get(key)
        if old is None or old.source is not Source.INTERPOLATED or old.latency_ms != ms or old.method != method:
            table.put(key, ms, Source.INTERPOLATED, method)
        added += 1
    return added


def own_grid_values(analysis: Analysis, table: LatencyTable) -> dict[str, float]:
    """This model's interpolation for signatures that other models' builds measured.

    A kernel's time depends on the model around it: a 56-channel convolution another
    model timed among its own neighbours can cost more than this model's 64-channel
    anchor does here. Off its own anchors, a model is predicted from its own grid (timed
    in its own context), so its predictions stay consistent with each other; the table
    keeps the other model's measurement for that model. Empty when the model was not
    profiled with a grid (e.g. estimated tables).
    """
    anchors = table.meta.models.get(analysis.model_key, {}).get("anchors_per_group")
    if not anchors:
        return {}
    block = int(table.meta.channel_block or 1)
    measured = measured_lookup(table)
    own = anchor_keys(analysis, int(anchors), block)  # a signature may be an anchor of another template
    try:
        return {key: ms for key, ms, _ in interpolations(analysis, measured, int(anchors), block, only=measured)
                if key not in own}
    except TableError:
        return {}
