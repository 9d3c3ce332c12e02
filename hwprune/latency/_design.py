"""Anchor designs: whole-model plans that together time every anchor combination.

In-context profiling runs whole pruned models and reads each kernel's time off the
runtime's per-node profile. The plans come from a Latin-square design over the anchor
grid (:mod:`hwprune.latency._grid`), so a handful of models covers every pair of anchor
counts any kernel sees.
"""
from __future__ import annotations

import itertools
import random

from hwprune.latency._grid import anchor_values
from hwprune.pruning import Analysis

__all__ = ["anchor_plans"]


def _next_prime(n: int) -> int:
    n = max(2, n)
    while any(n % d == 0 for d in range(2, int(n ** 0.5) + 1)):
        n += 1
    return n


def _neighbours(analysis: Analysis) -> dict[int, set[int]]:
    """Groups that share a kernel, by group index."""
    out: dict[int, set[int]] = {i: set() for i in range(len(analysis.space.groups))}
    for t in analysis.templates:
        for a, b in itertools.combinations(t.groups_used, 2):
            out[a].add(b)
            out[b].add(a)
    return out


def _colouring(neighbours: dict[int, set[int]], p: int) -> dict[int, int] | None:
    """Greedy colours < ``p`` that differ between neighbours; None when ``p`` is too few."""
    colour: dict[int, int] = {}
    for g in sorted(neighbours, key=lambda g: -len(neighbours[g])):
        used = {colour[n] for n in neighbours[g] if n in colour}
        free = [c for c in range(p) if c not in used]
        if not free:
            return None
        colour[g] = free[0]
    return colour


def anchor_plans(analysis: Analysis, anchors: int, block: int = 1, variant: int = 0) -> list[dict[str, int]]:
    """Whole-model plans whose kernels, together, hit every anchor combination.

    Each group gets a colour ``c_g`` so that groups sharing a kernel have different
    colours; plan ``(u, v)`` puts group ``g`` at anchor ``(u + v * c_g) mod p``. For two
    groups of different colours the map ``(u, v) -> (u + v c_1, u + v c_2)`` is a
    bijection of Z_p^2, so every pair of anchors occurs in some plan (p prime).

    ``variant`` > 0 adds a seeded offset per group, ``(u + v * c_g + o_g) mod p``: still
    every pair, but each kernel among different neighbours. A kernel's time depends on
    its neighbours (what is in cache, how the runtime lays the tensors out), so the
    profiler times every anchor in several such contexts and keeps the median.
    """
    groups = analysis.space.groups
    grid = [anchor_values(g.choices, anchors, block) for g in groups]
    neighbours = _neighbours(analysis)
    p = _next_prime(anchors)
    colour = _colouring(neighbours, p)
    while colour is None:
        p = _next_prime(p + 1)
        colour = _colouring(neighbours, p)
    pairs = any(neighbours.values())
    rng = random.Random(variant)
    offset = [rng.randrange(p) if variant else 0 for _ in groups]
    plans = []
    for u in range(p):
        for v in range(p if pairs else 1):
            plans.append({groups[g].name: grid[g][((u + v * colour[g] + offset[g]) % p) % len(grid[g])]
                          for g in range(len(groups))})
    return plans
