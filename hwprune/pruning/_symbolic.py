"""Symbolic channel counts: how each size in a model depends on the pruning plan.

Rather than re-deriving coupling rules per layer type, the model is pruned with *tag*
plans (every group keeps a different, distinctive number of channels) and every size
that changes is matched to the groups and multipliers that explain all observations
(dense and each tag plan). A size that never changes is a constant.

Most sizes follow one group (``mult * keep[g]``). A concatenation makes sums: the
convolution after ``cat([a, b])`` reads ``keep[a] + keep[b]`` channels (each segment
keeps its own share), and a segment that is never pruned (the input image) adds a
constant. Such a size is ``(sum(mult_i * keep[g_i]) + const) // div`` (``div``: a
grouped convolution's group count is its channels over the group width). The groups a
sum may involve come from the dependency graph (the groups that prune a layer's input
or output channels); enough tag plans are made to solve for them exactly with one
observation to spare, so a wrong guess is caught, not silently kept.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Iterable, Sequence

from hwprune.errors import ConfigError
from hwprune.pruning._plan import PruningPlan

if TYPE_CHECKING:
    from hwprune.pruning._space import PruningSpace

__all__ = ["Dim", "tag_plans", "DimSolver", "UnsupportedCoupling"]


@dataclass(frozen=True)
class Dim:
    """A size: ``(const + sum(mult * keep[group] for group, mult in terms)) // div``."""

    terms: tuple[tuple[int, int], ...] = ()
    const: int = 0
    div: int = 1

    @classmethod
    def constant(cls, value: int) -> "Dim":
        return cls((), value)

    @classmethod
    def of(cls, group: int, mult: int = 1) -> "Dim":
        return cls(((group, mult),))

    def value(self, keep: Sequence[int]) -> int:
        return (self.const + sum(m * keep[g] for g, m in self.terms)) // self.div

    @property
    def groups(self) -> tuple[int, ...]:
        return tuple(g for g, _ in self.terms)

    # single-group view, as before sums existed (a constant has group -1)
    @property
    def group(self) -> int:
        return self.terms[0][0] if len(self.terms) == 1 else -1

    @property
    def mult(self) -> int:
        return self.terms[0][1] if len(self.terms) == 1 else self.const


class UnsupportedCoupling(ConfigError):
    pass


def _tag_values(size: int, step: int, taken: set[Fraction]) -> tuple[int, int, bool]:
    """Two non-dense keeps ``a > b`` of a group (multiples of ``step``) whose ratio is
    new when possible; the flag says whether it is."""
    if size < 3 or size <= step:
        v = max(1, size - 1) if step == 1 else size
        return v, v, False
    a = size - step
    for b in range(a - step, 0, -step):
        if b <= (2 * size) // 3 and Fraction(a, b) not in taken:
            return a, b, True
    return a, max(step, a - step), False


def tag_plans(space: "PruningSpace", extra: int = 0, seed: int = 0) -> list[PruningPlan]:
    """Plans in which each group keeps a non-dense channel count.

    The first two make the ratios ``keep_A / keep_B`` pairwise distinct across groups
    (where the groups' steps allow), so a size that follows one group is explained by
    exactly one group. ``extra`` more plans keep random counts, for sizes that are sums.
    """
    keep_a: dict[str, int] = {}
    keep_b: dict[str, int] = {}
    ratios: set[Fraction] = set()
    space.tag_collisions = False
    for g in sorted(space.groups, key=lambda g: g.size):
        a, b, unique = _tag_values(g.size, g.step, ratios)
        ratios.add(Fraction(a, b))
        space.tag_collisions |= not unique and g.size >= 3 and g.size > g.step
        keep_a[g.name], keep_b[g.name] = a, b
    plans = [space._plan(keep_a), space._plan(keep_b)]
    rng = random.Random(seed)
    for _ in range(extra):
        keep = {}
        for g in space.groups:
            options = [c for c in range(g.step, g.size, g.step)] or [max(1, g.size - 1)]
            keep[g.name] = rng.choice(options)
        plans.append(space._plan(keep))
    return plans


def _solve_exact(rows: list[list[int]], values: list[int]) -> list[Fraction] | None:
    """The unique solution of ``rows @ x = values`` (Gaussian elimination in fractions),
    or None when there is none or it is not unique."""
    n = len(rows[0])
    m = [[Fraction(v) for v in r] + [Fraction(b)] for r, b in zip(rows, values)]
    r = 0
    pivots = []
    for c in range(n):
        p = next((i for i in range(r, len(m)) if m[i][c] != 0), None)
        if p is None:
            return None  # under-determined
        m[r], m[p] = m[p], m[r]
        for i in range(len(m)):
            if i != r and m[i][c] != 0:
                f = m[i][c] / m[r][c]
                m[i] = [a - f * b for a, b in zip(m[i], m[r])]
        pivots.append(c)
        r += 1
    if any(m[i][n] != 0 for i in range(r, len(m))):
        return None  # inconsistent: this support does not explain the observations
    return [m[i][n] / m[i][i] for i in range(n)]


class DimSolver:
    """Explains observed sizes through the groups.

    ``keeps[j][g]``: channels group ``g`` keeps in observation ``j`` (observation 0 is the
    dense model); ``supports``: sets of groups a size may sum over.
    """

    def __init__(self, keeps: Sequence[Sequence[int]], supports: Iterable[frozenset[int]] = ()) -> None:
        self.keeps = [list(k) for k in keeps]
        self.supports = sorted({s for s in supports if len(s) > 1}, key=lambda s: (len(s), sorted(s)))

    def solve(self, values: Sequence[int], where: str) -> Dim:
        values = list(values)
        if len(values) != len(self.keeps):
            raise ValueError(f"{len(values)} observations for {len(self.keeps)} plans")
        if len(set(values)) == 1:
            return Dim.constant(values[0])
        vd = values[0]
        hits = []
        for g, s in enumerate(self.keeps[0]):
            if s and vd % s == 0 and all(v == (vd // s) * k[g] for v, k in zip(values, self.keeps)):
                hits.append(Dim.of(g, vd // s))
        if len(hits) == 1:
            return hits[0]
        for g, s in enumerate(self.keeps[0]):  # a divided size: a grouped conv's group count
            if s and s % vd == 0 and all(k[g] * vd % s == 0 and v == k[g] * vd // s
                                         for v, k in zip(values, self.keeps)):
                hits.append(Dim(((g, 1),), 0, s // vd))
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise UnsupportedCoupling(f"cannot express the size of {where} ({vd} dense) through one pruning "
                                      f"group: several explain it equally well")
        fits: list[Dim] = []
        candidates = [frozenset([g]) for g in range(len(self.keeps[0]))] + self.supports
        for support in candidates:
            if fits and len(support) > len(fits[0].terms):
                break
            groups = sorted(support)
            if len(self.keeps) < len(groups) + 2:
                continue  # no observation to spare: a fit would prove nothing
            sol = _solve_exact([[k[g] for g in groups] + [1] for k in self.keeps], values)
            if sol is None or any(x == 0 for x in sol[:-1]):
                continue
            div = math.lcm(*(x.denominator for x in sol))
            fits.append(Dim(tuple((g, int(x * div)) for g, x in zip(groups, sol[:-1])), int(sol[-1] * div), div))
        if len(fits) == 1:
            return fits[0]
        raise UnsupportedCoupling(
            f"cannot express the size of {where} ({vd} dense) through the pruning groups"
            + (" (several sums explain it equally well)" if fits else
               " (it is no sum of the channel counts of the groups that prune it)"))
