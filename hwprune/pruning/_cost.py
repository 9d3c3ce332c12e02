"""Analytic cost of a plan: parameters, MACs, weight bytes, peak activation memory.

Computed from a symbolic description of the model (see ``_symbolic``), so evaluating a
plan runs nothing: a few thousand integer multiplications.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import onnx

from hwprune.errors import ConfigError
from hwprune.onnx_export import to_onnx_bytes
from hwprune.pruning._plan import PruningPlan
from hwprune.pruning._space import PruningSpace
from hwprune.pruning._space import NeedsPins, UnsafePruning
from hwprune.pruning._symbolic import Dim, DimSolver, UnsupportedCoupling, tag_plans

__all__ = ["Cost", "CostModel"]

_DTYPE_BYTES = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.INT64: 8,
                onnx.TensorProto.INT32: 4, onnx.TensorProto.DOUBLE: 8, onnx.TensorProto.UINT8: 1,
                onnx.TensorProto.INT8: 1, onnx.TensorProto.BOOL: 1}


@dataclass(frozen=True)
class Cost:
    params: int                 # trainable parameters of the torch model
    macs: int                   # multiply-accumulates of Conv/Gemm/MatMul, batch 1
    weight_bytes: int           # bytes of the exported model's weights (BN folded), per use
    peak_activation_bytes: int  # largest set of live activations during one inference

    @property
    def memory_bytes(self) -> int:
        """Weights plus peak activations: what a ``--memory`` budget limits."""
        return self.weight_bytes + self.peak_activation_bytes

    def to_dict(self) -> dict[str, int]:
        d = asdict(self)
        d["memory_bytes"] = self.memory_bytes
        return d


def _prod(dims: Sequence[Dim], keep: Sequence[int]) -> int:
    return math.prod(d.value(keep) for d in dims)


def _onnx_shapes(data: bytes) -> tuple[onnx.ModelProto, dict[str, tuple[list[int], int]]]:
    from hwprune.runtimes.ort import static_shapes

    model, dims = static_shapes(data)
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)}
    shapes: dict[str, tuple[list[int], int]] = {
        name: (d, _DTYPE_BYTES.get(types.get(name, onnx.TensorProto.FLOAT), 4)) for name, d in dims.items()}
    for init in model.graph.initializer:
        shapes[init.name] = (list(init.dims), _DTYPE_BYTES.get(init.data_type, 4))
    return model, shapes


class CostModel:
    """Symbolic cost of every plan in a :class:`PruningSpace`.

    >>> from hwprune.models import load_model
    >>> space = PruningSpace(load_model("resnet20", pretrained=False))
    >>> cm = CostModel(space)
    >>> cm.cost(space.dense_plan()).params
    272474
    """

    def __init__(self, space: PruningSpace, onnx_models: Sequence[bytes] | None = None) -> None:
        self.space = space
        supports = space.supports()
        # a sum over k groups has k multipliers and a constant: k + 1 unknowns, and one
        # observation to spare; ratio collisions between the two first tags need one more
        extra = max(0, max((len(s) for s in supports), default=0) + 2 - 3)
        plans = tag_plans(space, 0)
        if space.tag_collisions:
            extra = max(extra, 1)
        if extra:
            plans = tag_plans(space, extra)
        self.tag_plans = tuple(plans)
        self.sizes = [g.size for g in space.groups]
        keeps = [self.sizes] + [[p.keep[g.name] for g in space.groups] for p in plans]
        self.solver = DimSolver(keeps, supports)
        try:
            models = [space.lm.model] + [space.apply(p) for p in plans]
            shape = tuple(space.lm.input_shape)
            self.onnx_models = list(onnx_models) if onnx_models else [to_onnx_bytes(m, shape) for m in models]
            self._params(models)
            self._graph()
        except (UnsafePruning, NeedsPins):
            raise
        except Exception as exc:
            # find the group whose pruning breaks the model; say which layer, in one line
            space.check_safe()
            if isinstance(exc, UnsupportedCoupling):
                raise
            raise UnsafePruning(f"cannot prune model '{space.model_id}' safely: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc

    def solve(self, values: Sequence[int], where: str) -> Dim:
        """The symbolic size behind ``values``: the size in the dense model, then in each tag plan."""
        return self.solver.solve(values, where)

    def _params(self, models: list) -> None:
        named = [dict(m.named_parameters()) for m in models]
        self.param_dims: list[list[Dim]] = []
        for name, p in named[0].items():
            shapes = [tuple(n[name].shape) for n in named]
            self.param_dims.append([self.solve(vals, f"parameter {name} dim {i}")
                                    for i, vals in enumerate(zip(*shapes))])

    def _graph(self) -> None:
        parsed = [_onnx_shapes(d) for d in self.onnx_models]
        graph = parsed[0][0].graph
        shapes = [p[1] for p in parsed]

        def dims(name: str) -> list[Dim]:
            s = [sh[name][0] for sh in shapes]
            return [self.solve(vals, f"tensor {name} dim {i}") for i, vals in enumerate(zip(*s))]

        # The exporter emits Identity nodes that alias shared initializers; their number
        # depends on values, so they are folded away before the graphs are aligned.
        nodes_per_model = []
        for (m, sh) in parsed:
            init_names = {i.name for i in m.graph.initializer}
            alias = {n.output[0]: n.input[0] for n in m.graph.node
                     if n.op_type == "Identity" and n.input[0] in init_names}
            kept = []
            for n in m.graph.node:
                if n.op_type == "Identity" and n.output[0] in alias:
                    continue
                c = onnx.NodeProto()
                c.CopyFrom(n)
                c.input[:] = [alias.get(t, t) for t in n.input]
                kept.append(c)
            nodes_per_model.append(kept)
        if len({tuple(n.op_type for n in ns) for ns in nodes_per_model}) != 1:
            raise ConfigError("pruned exports of the model differ in structure; cannot cost plans")
        graph_nodes = nodes_per_model[0]
        inits = {i.name for i in graph.initializer}

        def node_dims(k: int, j: int) -> list[Dim]:
            # Initializers are matched by position, not name: the exporter merges equal-valued
            # initializers differently in each export.
            names = [ns[k].input[j] for ns in nodes_per_model]
            s = [sh[nm][0] for sh, nm in zip(shapes, names)]
            return [self.solve(vals, f"input {j} of node {graph_nodes[k].name} dim {i}")
                    for i, vals in enumerate(zip(*s))]

        # Weights are counted per use: the exporter merges initializers with equal values
        # (e.g. the zero biases of an untrained model), which a trained model does not have.
        self.weight_terms = [(node_dims(k, j), shapes[0][t][1]) for k, node in enumerate(graph_nodes)
                             for j, t in enumerate(node.input) if t in inits]
        self.mac_terms: list[list[Dim]] = []
        for k, node in enumerate(graph_nodes):
            if node.op_type == "Conv":
                w = node_dims(k, 1)
                out = dims(node.output[0])
                self.mac_terms.append(w + out[2:])  # cout*cin/g*kh*kw * ho*wo
            elif node.op_type in ("Gemm", "MatMul") and node.input[1] in inits:
                w = node_dims(k, 1)
                out = dims(node.output[0])
                self.mac_terms.append(w + out[:-1])
        # activation liveness over the (topologically ordered) ONNX graph
        last_use: dict[str, int] = {}
        for i, node in enumerate(graph_nodes):
            for t in node.input:
                last_use[t] = i
        for o in graph.output:
            last_use[o.name] = len(graph_nodes)
        act_dims: dict[str, tuple[list[Dim], int]] = {}
        for vi in graph.input:
            if vi.name not in inits:
                act_dims[vi.name] = (dims(vi.name), shapes[0][vi.name][1])
        live: set[str] = set(act_dims)
        self.live_sets: list[list[tuple[list[Dim], int]]] = []
        for i, node in enumerate(graph_nodes):
            outs = [o for o in node.output if o in shapes[0]]
            for o in outs:
                act_dims[o] = (dims(o), shapes[0][o][1])
            step = [act_dims[t] for t in sorted(live | set(outs)) if t in act_dims]
            self.live_sets.append(step)
            live |= set(outs)
            live = {t for t in live if last_use.get(t, -1) > i}

    def cost(self, plan: PruningPlan) -> Cost:
        keep_map = self.space.full_keep(plan)
        keep = [keep_map[g.name] for g in self.space.groups]
        params = sum(_prod(d, keep) for d in self.param_dims)
        macs = sum(_prod(d, keep) for d in self.mac_terms)
        weight_bytes = sum(_prod(d, keep) * b for d, b in self.weight_terms)
        peak = max((sum(_prod(d, keep) * b for d, b in step) for step in self.live_sets), default=0)
        return Cost(params, macs, weight_bytes, peak)


def dense_params_macs(model, input_shape) -> tuple[int, int]:
    """Parameters and Conv/Linear MACs of an unpruned model, by one forward pass."""
    import torch
    from torch import nn

    macs = 0

    def hook(m, i, o):
        nonlocal macs
        if isinstance(m, nn.Conv2d):
            macs += o.shape[0] * o.shape[2] * o.shape[3] * m.weight.numel()
        elif isinstance(m, nn.Linear):
            macs += (o.numel() // m.out_features) * m.weight.numel()

    hooks = [m.register_forward_hook(hook) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(*input_shape))
    finally:
        for h in hooks:
            h.remove()
    return sum(p.numel() for p in model.parameters()), macs
