"""The pruning space of a model: its coupled channel groups and their channel choices.

Coupling comes from Torch-Pruning's dependency graph: a residual add, a depthwise conv,
an element-wise gate (squeeze-and-excitation) or a concatenation ties the channels of
several layers into one group, pruned together. A concatenation keeps one group per
segment (each segment keeps its own share), so a plan stays one number per group.

Grouped convolutions (not depthwise) are pruned in whole groups: their group width stays,
their group count shrinks, and the groups they sit in keep multiples of the width.
Pinned layers (``keep_layers``) and the layers that produce the model's output keep all
their output channels.
"""
from __future__ import annotations

import contextlib
import copy
import math
import random
from dataclasses import dataclass
from typing import Sequence

import torch
import torch_pruning as tp
from torch import nn

from hwprune.errors import ConfigError, PlanError
from hwprune.models import LoadedModel
from hwprune.pruning._plan import PruningPlan

__all__ = ["Group", "PruningSpace", "UnsafePruning", "NeedsPins", "rebuild_pruned"]

_ROOT_TYPES = (nn.Conv2d, nn.Conv1d, nn.Linear, nn.ConvTranspose2d)


class UnsafePruning(ConfigError):
    """Pruning this model would break it: names the layer and why."""


class NeedsPins(Exception):
    """Torch-Pruning cannot follow these groups' channels (e.g. through a channel shuffle):
    ``pins`` maps each group's root layer to the reason; they are kept whole. ``ties``:
    groups whose channels reach a layer twice, to be pruned in tied sets."""

    def __init__(self, pins: dict[str, str], ties: Sequence[str] = ()) -> None:
        super().__init__(", ".join([*pins, *ties]))
        self.pins = pins
        self.ties = list(ties)


class _MappingFailure(Exception):
    pass


def _is_grouped(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and not (m.groups == m.in_channels == m.out_channels)


class _WholeGroupConvPruner(tp.pruner.function.ConvPruner):
    """A grouped convolution pruned in whole groups (in and out together, like a depthwise
    conv): a dropped group takes its input and output channels with it; the group width stays."""

    def prune_out_channels(self, layer: nn.Module, idxs):
        width = layer.out_channels // layer.groups
        drop = sorted(set(int(i) for i in idxs))
        blocks = sorted({i // width for i in drop})
        if drop != [b * width + j for b in blocks for j in range(width)]:
            raise UnsafePruning(f"grouped conv would lose part of a group ({len(drop)} channels, width {width})")
        keep = [i for i in range(layer.out_channels) if i // width not in blocks]
        layer.out_channels = len(keep)
        layer.in_channels = layer.in_channels - len(blocks) * (layer.in_channels // layer.groups)
        layer.groups = layer.groups - len(blocks)
        layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 0)
        if layer.bias is not None:
            layer.bias = self._prune_parameter_and_grad(layer.bias, keep, 0)
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channel_groups(self, layer):
        return 1

    def get_in_channel_groups(self, layer):
        return 1


class _GroupedConv2d(nn.Conv2d):
    """Marks a grouped conv while a dependency graph is built and pruned (Torch-Pruning
    finds custom pruners by class); the class is put back afterwards."""


@contextlib.contextmanager
def _dependency_graph(model: nn.Module, x: torch.Tensor):
    marked = []
    for name, m in model.named_modules():
        if _is_grouped(m):
            if m.in_channels != m.out_channels:
                raise UnsafePruning(
                    f"cannot prune layer '{name}' safely: a grouped convolution ({m.groups} groups) with "
                    f"{m.in_channels} input and {m.out_channels} output channels is pruned in whole groups, "
                    f"which needs equal input and output channels",
                    f"pin the layers around it: --keep-layers {name}")
            if type(m) is nn.Conv2d:
                m.__class__ = _GroupedConv2d
                marked.append(m)
    try:
        with torch.enable_grad():  # the dependency graph is traced through autograd
            yield tp.DependencyGraph().build_dependency(
                model, example_inputs=x, verbose=False,
                customized_pruners={_GroupedConv2d: _WholeGroupConvPruner()} if marked else None)
    finally:
        for m in marked:
            m.__class__ = nn.Conv2d


@dataclass(frozen=True)
class Group:
    """One search variable: a set of coupled channels, named by its root module path."""

    name: str
    size: int
    choices: tuple[int, ...]   # ascending; the last is ``size``
    members: tuple[str, ...]   # "module.path:out" / "module.path:in"
    step: int = 1              # channels go in multiples of this (a grouped conv's group width)

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


def _channel_choices(size: int, multiple: int, min_keep: float, step: float, unit: int = 1) -> tuple[int, ...]:
    # Channel counts stay multiples of the SIMD-friendly ``multiple`` (runtimes block
    # channels by 8 or 16; a count between blocks costs as much as the next block).
    # Only groups narrower than two multiples fall back to a finer step. ``unit``: counts
    # must be multiples of it (a grouped conv's group width).
    m = max(1, min(multiple, size // 2))
    if unit > 1:
        m = math.lcm(m, unit) if math.lcm(m, unit) < size else unit
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
                 ratio_step: float = 0.05, keep_layers: Sequence[str] | None = None,
                 auto_pinned: dict[str, str] | None = None, tied: Sequence[str] = ()) -> None:
        self.lm = lm
        self.multiple, self.min_keep, self.ratio_step = multiple, min_keep, ratio_step
        self.keep_layers = tuple(keep_layers if keep_layers is not None else getattr(lm, "keep_layers", ()) or ())
        #: layers kept whole because Torch-Pruning cannot follow their channels, with why
        self.auto_pinned = dict(auto_pinned or {})
        #: groups whose channels reach a layer twice: root channels pruned together, in sets
        self.ties: dict[str, list[list[int]]] = {}
        #: groups split at a concatenation they span (gated or added as a whole): root ->
        #: [(segment group name, its root channel indices)]
        self.segments: dict[str, list[tuple[str, list[int]]]] = {}
        self.tag_collisions = False
        model = lm.model.eval()
        x = torch.zeros(*lm.input_shape)
        outputs = _output_layers(model, x)
        self._ignored = outputs + [m for m in _pinned(model, self.keep_layers + tuple(self.auto_pinned))
                                   if m not in outputs]
        names = {m: n for n, m in model.named_modules()}
        with _dependency_graph(model, x) as dg:
            all_groups = list(dg.get_all_groups(ignored_layers=self._ignored, root_module_types=_ROOT_TYPES))
            for g in all_groups:
                if names[g[0].dep.target.module] in tied:
                    self.ties[names[g[0].dep.target.module]] = _tie_classes(dg, g)
        groups: list[Group] = []
        for g in all_groups:
            root = g[0].dep.target.module
            size = len(g[0].idxs)
            members = []
            unit = 1
            member_names = _member_names(g, names)
            for item, member in zip(g, member_names):
                mod = item.dep.target.module
                if member:
                    members.append(member)
                    if _is_grouped(mod) or isinstance(mod, _GroupedConv2d):
                        unit = math.lcm(unit, mod.out_channels // mod.groups)
            classes = self.ties.get(names[root])
            segments = _segments(g, names, member_names) if classes is None and unit == 1 else None
            if segments:  # a gate or a residual add over a concatenation: one group per segment
                self.segments[names[root]] = segments
                for seg_name, idxs in segments:
                    seg = set(idxs)
                    seg_members = sorted({m for item, m in zip(g, member_names)
                                          if m and seg & set(item.root_idxs)})
                    groups.append(Group(seg_name, len(idxs), _channel_choices(len(idxs), multiple, min_keep,
                                                                              ratio_step), tuple(seg_members)))
                continue
            if classes is not None:
                if unit > 1 or len({len(c) for c in classes}) != 1:
                    raise UnsafePruning(f"cannot prune layer '{names[root]}' safely: its channels reach a layer "
                                        f"several times, unevenly", f"pin it: --keep-layers {names[root]}")
                unit = len(classes[0])
            if size % unit:
                raise UnsafePruning(f"cannot prune layer '{names[root]}' safely: its {size} channels are not "
                                    f"whole groups of {unit} of the grouped convolutions they feed",
                                    f"pin it: --keep-layers {names[root]}")
            groups.append(Group(names[root], size, _channel_choices(size, multiple, min_keep, ratio_step, unit),
                                tuple(sorted(set(members))), unit))
        if not groups:
            raise ConfigError(f"model '{lm.model_id}' has no prunable channel groups"
                              + (" (all are pinned by --keep-layers)" if self.keep_layers else ""))
        self.groups = groups
        self.by_name = {g.name: g for g in groups}

    def supports(self) -> list[frozenset[int]]:
        """Sets of groups that prune one layer's input (or output) channels together: a
        concatenation's consumer reads one segment per group. Sizes may be sums over them."""
        by_member: dict[str, set[int]] = {}
        for i, g in enumerate(self.groups):
            for m in g.members:
                by_member.setdefault(m, set()).add(i)
        return sorted({frozenset(s) for s in by_member.values() if len(s) > 1}, key=sorted)

    # ---- plans -------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.lm.model_id

    def _plan(self, keep: dict[str, int], **meta: object) -> PruningPlan:
        if self.keep_layers:
            meta = {**meta, "keep_layers": list(self.keep_layers)}
        if self.auto_pinned:
            meta = {**meta, "kept_whole": sorted(self.auto_pinned)}
        if self.ties:
            meta = {**meta, "tied": sorted(self.ties)}
        return PruningPlan(self.model_id, tuple(self.lm.input_shape), keep,
                           {g.name: g.size for g in self.groups}, meta=dict(meta))

    def dense_plan(self) -> PruningPlan:
        return self._plan({g.name: g.size for g in self.groups})

    def smallest_plan(self) -> PruningPlan:
        return self._plan({g.name: g.floor for g in self.groups})

    def check_safe(self) -> None:
        """Prune every group alone and run the model.

        Raises :class:`NeedsPins` with every group whose channels Torch-Pruning cannot
        follow (its pruning fails: a channel shuffle), else :class:`UnsafePruning` naming
        the first group whose pruned model fails to run or changes its output shape.
        """
        x = torch.zeros(*self.lm.input_shape)
        with torch.no_grad():
            ref = self.lm.model(x).shape
        pins: dict[str, str] = {}
        ties: list[str] = []
        root_of = {seg: root for root, segments in self.segments.items() for seg, _ in segments}
        for g in self.groups:
            keep = {g.name: g.choices[-2] if len(g.choices) > 1 else max(1, g.size - g.step)}
            root = root_of.get(g.name, g.name)  # a segment is pinned or tied as its whole group
            try:
                pruned = self.apply(self._plan(keep))
            except _MappingFailure as exc:
                if exc.args[0].startswith("pruning to") and root not in self.ties:
                    if root not in ties:
                        ties.append(root)  # its channels reach a layer twice: prune them in tied sets
                else:
                    pins[root] = f"Torch-Pruning cannot follow its channels ({exc})"
                continue
            try:
                with torch.no_grad():
                    out = pruned(x)
                bad = None if tuple(out.shape) == tuple(ref) else f"the output shape changes to {tuple(out.shape)}"
            except Exception as exc:  # what pruning broke: reported in one line
                bad = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if bad:
                raise UnsafePruning(f"cannot prune layer '{root}' of model '{self.model_id}' safely: "
                                    f"pruning its group breaks the model ({bad})",
                                    f"pin it: --keep-layers {root}")
        if pins or ties:
            raise NeedsPins(pins, ties)

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
            pinned = plan.meta.get("keep_layers") or []
            raise PlanError(f"plan names unknown groups: {', '.join(unknown[:5])}"
                            f"{' ...' if len(unknown) > 5 else ''}",
                            f"the plan pins --keep-layers {','.join(pinned)}; this model pins "
                            f"{','.join(self.keep_layers) or 'none'}"
                            if list(pinned) != list(self.keep_layers) else
                            f"known groups: {', '.join(g.name for g in self.groups[:6])} ...")
        for name, k in plan.keep.items():
            g = self.by_name[name]
            if not (1 <= k <= g.size):
                raise PlanError(f"group '{name}' keeps {k} channels; it must keep 1..{g.size}")
            if k % g.step:
                raise PlanError(f"group '{name}' keeps {k} channels; it feeds grouped convolutions of "
                                f"width {g.step} and must keep a multiple of {g.step}")
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
        done = set()
        imp = tp.importance.GroupMagnitudeImportance(p=1, group_reduction="mean", normalizer=None)
        with _dependency_graph(pruned, x) as dg, torch.no_grad():
            for g in dg.get_all_groups(ignored_layers=ignored, root_module_types=_ROOT_TYPES):
                name = names[g[0].dep.target.module]
                size = len(g[0].idxs)
                segments = self.segments.get(name)
                if segments:
                    done.update(n for n, _ in segments)
                    if all(keep[n] >= len(idxs) for n, idxs in segments):
                        continue
                else:
                    target = keep.get(name, size)
                    done.add(name)
                    if target >= size:
                        continue
                try:
                    scores = imp(g)
                except (IndexError, RuntimeError) as exc:  # the graph maps channels out of range
                    raise _MappingFailure(f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
                if scores is None:
                    scores = torch.zeros(size)
                unit = self.by_name[name].step if name in self.by_name else 1
                if segments:  # each segment keeps its own count of its strongest channels
                    drop = []
                    for n, idxs in segments:
                        order = torch.argsort(-scores.float()[idxs], stable=True)
                        drop += [idxs[int(i)] for i in order[keep[n]:]]
                    drop.sort()
                elif name in self.ties:  # tied sets of root channels: rank sets by their mean score
                    classes = self.ties[name]
                    means = torch.stack([scores.float()[c].mean() for c in classes])
                    order_c = torch.argsort(-means, stable=True)
                    drop = sorted(i for k in order_c[target // unit:] for i in classes[int(k)])
                elif unit > 1:  # whole groups of a grouped conv: rank groups by their mean score
                    blocks = scores.float().reshape(-1, unit).mean(1)
                    order_b = torch.argsort(-blocks, stable=True)
                    drop = sorted(int(b) * unit + j for b in order_b[target // unit:] for j in range(unit))
                else:
                    order = torch.argsort(-scores.float(), stable=True)
                    drop = sorted(int(i) for i in order[target:])
                try:
                    dg.get_pruning_group(g[0].dep.target.module, g[0].dep.handler, idxs=drop).prune()
                except UnsafePruning:
                    raise
                except (IndexError, RuntimeError, ValueError) as exc:
                    raise _MappingFailure(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                                          ) from exc
        missing = sorted(set(keep) - done)
        if missing:
            raise PlanError(f"groups not found when pruning: {', '.join(missing[:5])}")
        for name, target in keep.items():
            # A channel that reaches a layer twice (a residual add over a concatenation of a
            # tensor and a depthwise conv of it, as in GhostNet) makes Torch-Pruning drop
            # more than asked: the root layer shows it.
            root = modules.get(name)
            got = getattr(root, "out_channels", getattr(root, "out_features", None))
            if got is not None and got != target and self.by_name[name].size == _width(self.lm.model, name):
                raise _MappingFailure(f"pruning to {target} channels left {got}")
        return pruned

    def _ignored_names(self) -> list[str]:
        names = {m: n for n, m in self.lm.model.named_modules()}
        return [names[m] for m in self._ignored]


def _member_names(g, names: dict) -> list[str | None]:
    """``"module.path:out"`` / ``"module.path:in"`` per item of a dependency group (None
    for the graph's internal nodes)."""
    return [f"{names[it.dep.target.module]}:{'out' if 'out' in it.dep.handler.__name__ else 'in'}"
            if it.dep.target.module in names else None for it in g]


def _segments(g, names: dict, member_names: list[str | None]) -> list[tuple[str, list[int]]] | None:
    """The segments of a group that spans a concatenation as a whole (``cat([a, b])``
    gated by squeeze-and-excitation, or added to a residual): root channels produced by
    the same layers, each named by the first layer that produces exactly it. None when
    every layer produces all of the group's channels, or some channels come from no layer.
    Segments no single layer produces exactly (two concatenations with different splits
    added together) are named ``first_layer@first_channel``. ``member_names`` is
    :func:`_member_names` of ``g``."""
    size = len(g[0].idxs)
    producers: list[set[str]] = [set() for _ in range(size)]
    covers: dict[str, frozenset[int]] = {}
    for item, member in zip(g, member_names):
        if member and member.endswith(":out") and isinstance(item.dep.target.module, _ROOT_TYPES):
            idxs = frozenset(int(i) for i in item.root_idxs if i is not None and 0 <= i < size)
            covers[member[:-4]] = idxs
            for i in idxs:
                producers[i].add(member[:-4])
    by_signature: dict[frozenset[str], list[int]] = {}
    for i, p in enumerate(producers):
        by_signature.setdefault(frozenset(p), []).append(i)
    if len(by_signature) < 2:
        return None
    order = list(names.values())
    segments = []
    for sig, idxs in sorted(by_signature.items(), key=lambda kv: kv[1]):
        if not sig:  # channels no layer produces (the model's input): not prunable here
            return None
        exact = [n for n, c in covers.items() if c == frozenset(idxs)]
        # two concatenations with different splits meet in an add: name the overlap
        name = min(exact, key=order.index) if exact else f"{min(sig, key=order.index)}@{idxs[0]}"
        segments.append((name, idxs))
    return segments


def _pinned(model: nn.Module, keep_layers: Sequence[str]) -> list[nn.Module]:
    """The prunable layers of ``keep_layers`` (a name pins the layer or every layer in it)."""
    modules = dict(model.named_modules())
    unknown = [n for n in keep_layers if n not in modules]
    if unknown:
        import difflib

        near = difflib.get_close_matches(unknown[0], list(modules), n=3)
        raise ConfigError(f"--keep-layers names no layer of the model: {', '.join(unknown)}",
                          f"did you mean {', '.join(near)}?" if near else
                          "layer names are module paths, as in model.named_modules()")
    out = []
    for n in keep_layers:
        for name, m in modules.items():
            if (name == n or name.startswith(n + ".") or not n) and isinstance(m, _ROOT_TYPES) and m not in out:
                out.append(m)
    return out


def _width(model: nn.Module, name: str) -> int | None:
    m = dict(model.named_modules()).get(name)
    return getattr(m, "out_channels", getattr(m, "out_features", None))


def rebuild_pruned(model: str, plan: "str | PruningPlan", state_dict: str | None = None,
                   weights: str | None = None) -> nn.Module:
    """The pruned model of ``plan``, rebuilt from the model spec (nothing is unpickled).

    The plan fixes every tensor shape; ``state_dict`` (a pruned model's
    ``model_state_dict.pt``) gives the weights. Without it, the pruned model keeps the
    channels ``weights`` (the dense state_dict) ranks highest.

    >>> m = rebuild_pruned("my_net.py:build", "pruned/plan.json", "pruned/model_state_dict.pt")  # doctest: +SKIP
    """
    from hwprune.models import load_model

    plan = plan if isinstance(plan, PruningPlan) else PruningPlan.load(plan)
    lm = load_model(model, weights, tuple(plan.input_shape), pretrained=weights is None)
    space = PruningSpace(lm, keep_layers=plan.meta.get("keep_layers") or (),
                         auto_pinned={n: "kept whole in the plan" for n in plan.meta.get("kept_whole") or ()},
                         tied=plan.meta.get("tied") or ())
    pruned = space.apply(plan)
    if state_dict is not None:
        try:
            pruned.load_state_dict(torch.load(state_dict, map_location="cpu", weights_only=True))
        except (RuntimeError, OSError) as exc:
            raise PlanError(f"state_dict '{state_dict}' does not fit the plan's model: "
                            f"{str(exc).strip().splitlines()[0]}") from exc
    return pruned.eval()


def _tie_classes(dg: tp.DependencyGraph, g) -> list[list[int]]:
    """Sets of the group's root channels that reach some layer as the same channel (a
    residual add over ``cat([y, depthwise(y)])``): pruning one prunes the others."""
    root, handler = g[0].dep.target.module, g[0].dep.handler
    size = len(g[0].idxs)
    parent = list(range(size))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first: dict[tuple, int] = {}
    for r in range(size):
        for item in dg.get_pruning_group(root, handler, idxs=[r]):
            kind = "out" if "out" in item.dep.handler.__name__ else "in"
            for i in item.idxs:
                key = (id(item.dep.target.module), kind, int(i))
                if key in first:
                    parent[find(r)] = find(first[key])
                else:
                    first[key] = r
    classes: dict[int, list[int]] = {}
    for r in range(size):
        classes.setdefault(find(r), []).append(r)
    return sorted(classes.values())
