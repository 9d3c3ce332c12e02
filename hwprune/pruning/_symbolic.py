"""Symbolic channel counts: how each size in a model depends on the pruning plan.

Rather than re-deriving coupling rules per layer type, the model is pruned twice with
*tag* plans (every group keeps a different, distinctive number of channels) and every
size that changes is matched to the group and multiplier that explain all three
observations (dense, tag A, tag B). A size that never changes is a constant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from hwprune.errors import ConfigError
from hwprune.pruning._plan import PruningPlan
from hwprune.pruning._space import PruningSpace

__all__ = ["Dim", "tag_plans", "solve_dim", "UnsupportedCoupling"]


@dataclass(frozen=True)
class Dim:
    """A size: ``mult * keep[group]`` when ``group >= 0``, else the constant ``mult``."""

    group: int
    mult: int

    def value(self, keep: Sequence[int]) -> int:
        return self.mult * keep[self.group] if self.group >= 0 else self.mult


class UnsupportedCoupling(ConfigError):
    pass


def tag_plans(space: PruningSpace) -> tuple[PruningPlan, PruningPlan]:
    """Two plans in which each group keeps a non-dense channel count.

    The ratios ``keep_A / keep_B`` are pairwise distinct across groups, so a size seen as
    ``(k*size_g, k*A_g, k*B_g)`` can only be explained by one group.
    """
    from fractions import Fraction

    keep_a: dict[str, int] = {}
    keep_b: dict[str, int] = {}
    ratios: set[Fraction] = set()
    for g in sorted(space.groups, key=lambda g: g.size):
        if g.size < 3:
            keep_a[g.name] = keep_b[g.name] = max(1, g.size - 1)
            continue
        a = g.size - 1
        for b in range(max(1, (2 * g.size) // 3), 0, -1):
            if Fraction(a, b) not in ratios:
                break
        ratios.add(Fraction(a, b))
        keep_a[g.name], keep_b[g.name] = a, b
    return space._plan(keep_a), space._plan(keep_b)


def solve_dim(values: tuple[int, int, int], sizes: Sequence[int], tags_a: Sequence[int],
              tags_b: Sequence[int], where: str) -> Dim:
    vd, va, vb = values
    if vd == va == vb:
        return Dim(-1, vd)
    hits = [Dim(g, vd // s) for g, s in enumerate(sizes)
            if s and vd % s == 0 and va == (vd // s) * tags_a[g] and vb == (vd // s) * tags_b[g]]
    if len(hits) != 1:
        raise UnsupportedCoupling(
            f"cannot express the size of {where} ({vd} dense) through one pruning group"
            + (" (it depends on several, e.g. a concatenation)" if not hits else ""))
    return hits[0]
