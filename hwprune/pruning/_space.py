"""The pruning space of a model: its coupled channel groups and their channel choices.

Coupling comes from Torch-Pruning's dependency graph: a residual add, a depthwise conv or
a concatenation ties the channels of several layers into one group, pruned together.
"""
from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from hwprune.errors import ConfigError, PlanError
from hwprune.models import LoadedModel
from hwprune.pruning._plan import PruningPlan

__all__ = ["Group", "PruningSpace"]

_ROOT_TYPES = (nn.Conv2d, nn.Conv1d, nn.Linear)


@dataclass(frozen=True)
class Group:
    """One search variable: a set of coupled channels, named by its root module path."""

    name: str
    size: int
    choices: tuple[int, ...]   # ascending; the last is ``size``
    members: tuple[str, ...]   # "module.path:out" / "module.path:in"

    @property
    def floor(self) -> int:
        return self.choices[0]

    def snap(self, channels: float) -> int:
        """The allowed channel count nearest to ``channels`` (ties go to the larger)."""
        return min(self.choices, key=lambda c: (abs(c - channels), -c))


def _output_layers(model: nn.Module, x: torch.Tensor) -> list[nn.Module]:
    """Layers whose output is (a view of) the model's output: never pruned."""
    outs: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: outs.append((m, o)))
             for m in model.modules() if isinstance(m, _ROOT_TYPES)]
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    ys = [t for t in (y if isinstance(y, (tuple, list)) else [y]) if isinstance(t, torch.Tensor)]
    ptrs = {t.untyped_storage().data_ptr() for t in ys}
    return [m for m, o in outs
            if isinstance(o, torch.Tensor) and o.untyped_storage().data_ptr() in ptrs]


def _channel_choices(size: int, multiple: int, min_keep: float, step: float) -> tuple[int, ...]:
    # Channel counts stay multiples of the SIMD-friendly ``multiple`` (runtimes block
    # channels by 8 or 16; a count between blocks costs as much as the next block).
    # Only groups narrower than two multiples fall back to a finer step.
    m = max(1, min(multiple, size // 2))
    floor = max(m, int(math.ceil(size * min_keep / m)) * m)
    values = {size}
    r = 0.0
    while r < 1.0 - min_keep + 1e-9:
        c = int(round(size * (1.0 - r) / m)) * m
        if floor <= c <= size:
            values.add(c)
        r += step
    values.add(min(floor, size))
    return tuple(sorted(values))


class PruningSpace:
    """Coupled channel groups of a model and the channel counts each may keep.

    >>> from hwprune.models import load_model
    >>> space = PruningSpace(load_model("resnet20", pretrained=False))
    >>> len(space.groups) > 0
    True
    """

    def __init__(self, lm: LoadedModel, multiple: int = 8, min_keep: float = 0.1,
                 ratio_step: float = 0.05) -> None:
        self.lm = lm
        self.multiple, self.min_keep, self.ratio_step = multiple, min_keep, ratio_step
        model = lm.model.eval()
        x = torch.zeros(*lm.input_shape)
        self._ignored = _output_layers(model, x)
        names = {m: n for n, m in model.named_modules()}
        with torch.enable_grad():  # the dependency graph is traced through autograd
            dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
        groups: list[Group] = []
        for g in dg.get_all_groups(ignored_layers=self._ignored, root_module_types=_ROOT_TYPES):
            root = g[0].dep.target.module
            size = len(g[0].idxs)
            members = []
            for item in g:
                mod = item.dep.target.module
                if mod in names:
                    kind = "out" if "out" in item.dep.handler.__name__ else "in"
                    members.append(f"{names[mod]}:{kind}")
            groups.append(Group(names[root], size, _channel_choices(size, multiple, min_keep, ratio_step),
                                tuple(sorted(set(members)))))
        if not groups:
            raise ConfigError(f"model '{lm.model_id}' has no prunable channel groups")
        self.groups = groups
        self.by_name = {g.name: g for g in groups}

    # ---- plans -------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.lm.model_id

    def _plan(self, keep: dict[str, int], **meta: object) -> PruningPlan:
        return PruningPlan(self.model_id, tuple(self.lm.input_shape), keep,
                           {g.name: g.size for g in self.groups}, meta=dict(meta))

    def dense_plan(self) -> PruningPlan:
        return self._plan({g.name: g.size for g in self.groups})

    def smallest_plan(self) -> PruningPlan:
        return self._plan({g.name: g.floor for g in self.groups})

    def uniform_plan(self, ratio: float) -> PruningPlan:
        """Every group keeps ``(1 - ratio)`` of its channels, snapped to its choices."""
        if not 0.0 <= ratio < 1.0:  # also false for NaN
            raise ConfigError(f"pruning ratio must be in [0, 1), got {ratio}")
        return self._plan({g.name: g.snap(g.size * (1.0 - ratio)) for g in self.groups},
                          uniform_ratio=ratio)

    def plan_from_ratios(self, ratios: dict[str, float]) -> PruningPlan:
        keep = {}
        for g in self.groups:
            r = ratios.get(g.name, 0.0)
            if not (0.0 <= r < 1.0):
                raise ConfigError(f"pruning ratio of group '{g.name}' must be in [0, 1), got {r}")
            keep[g.name] = g.snap(g.size * (1.0 - r))
        return self._plan(keep)

    def random_plan(self, rng: random.Random, low: float = 0.0, high: float = 0.8) -> PruningPlan:
        return self.plan_from_ratios({g.name: rng.uniform(low, high) for g in self.groups})

    def validate(self, plan: PruningPlan) -> None:
        """Raise PlanError unless ``plan`` was made for this model and fits its groups."""
        if plan.model_id != self.model_id:
            raise PlanError(f"plan is for model '{plan.model_id}', not '{self.model_id}'",
                            "make a plan for this model with hwprune prune or hwprune search")
        if tuple(plan.input_shape) != tuple(self.lm.input_shape):
            raise PlanError(f"plan is for input shape {'x'.join(map(str, plan.input_shape))}, "
                            f"the model uses {'x'.join(map(str, self.lm.input_shape))}",
                            "pass the matching --input-shape")
        unknown = sorted(set(plan.keep) - set(self.by_name))
        if unknown:
            raise PlanError(f"plan names unknown groups: {', '.join(unknown[:5])}"
                            f"{' ...' if len(unknown) > 5 else ''}",
                            f"known groups: {', '.join(g.name for g in self.groups[:6])} ...")
        for name, k in plan.keep.items():
            g = self.by_name[name]
            if not (1 <= k <= g.size):
                raise PlanError(f"group '{name}' keeps {k} channels; it must keep 1..{g.size}")
            if plan.dense.get(name, g.size) != g.size:
                raise PlanError(f"group '{name}' has {g.size} channels in this model, "
                                f"the plan says {plan.dense[name]}: weights or model differ")

    def full_keep(self, plan: PruningPlan) -> dict[str, int]:
        """Kept channels for every group (groups the plan omits stay dense)."""
        return {g.name: plan.keep.get(g.name, g.size) for g in self.groups}

    # ---- applying ----------------------------------------------------------------------
    def apply(self, plan: PruningPlan, model: nn.Module | None = None) -> nn.Module:
        """A dense, physically smaller copy of ``model`` (default: the space's model).

        Each group keeps the channels with the largest L1 group magnitude (Torch-Pruning's
        ``GroupMagnitudeImportance(p=1)``); ties keep the lower index, so the result is
        deterministic.
        """
        self.validate(plan)
        keep = self.full_keep(plan)
        src = model if model is not None else self.lm.model
        pruned = copy.deepcopy(src).eval()
        x = torch.zeros(*self.lm.input_shape)
        names = {m: n for n, m in pruned.named_modules()}
        modules = dict(pruned.named_modules())
        ignored = [modules[n] for n in self._ignored_names() if n in modules]
        with torch.enable_grad():
            dg = tp.DependencyGraph().build_dependency(pruned, example_inputs=x)
        imp = tp.importance.GroupMagnitudeImportance(p=1, group_reduction="mean", normalizer=None)
        done = set()
        with torch.no_grad():
            for g in dg.get_all_groups(ignored_layers=ignored, root_module_types=_ROOT_TYPES):
                name = names[g[0].dep.target.module]
                size = len(g[0].idxs)
                target = keep.get(name, size)
                done.add(name)
                if target >= size:
                    continue
                scores = imp(g)
                if scores is None:
                    order = torch.arange(size)
                else:
                    order = torch.argsort(-scores.float(), stable=True)
                drop = sorted(int(i) for i in order[target:])
                dg.get_pruning_group(g[0].dep.target.module, g[0].dep.handler, idxs=drop).prune()
        missing = sorted(set(keep) - done)
        if missing:
            raise PlanError(f"groups not found when pruning: {', '.join(missing[:5])}")
        return pruned

    def _ignored_names(self) -> list[str]:
        names = {m: n for n, m in self.lm.model.named_modules()}
        return [names[m] for m in self._ignored]
