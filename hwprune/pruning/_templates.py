"""Kernel templates: a model's kernels with channel counts that follow the pruning plan."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Sequence

from hwprune.errors import ConfigError
from hwprune.pruning._symbolic import Dim
from hwprune.runtimes.kernels import KernelSig, RawKernel

__all__ = ["KernelTemplate", "kernel_templates"]

_INT_FIELDS = ("cin", "cout", "groups", "h", "w")


@dataclass(frozen=True)
class KernelTemplate:
    """A kernel whose channel fields depend on the plan (``Dim`` per integer field)."""

    name: str
    base: KernelSig                 # the dense kernel
    dims: tuple[Dim, ...]           # one per field in _INT_FIELDS
    outputs: tuple[str, ...] = ()   # tensors of the fused chain (name its runtime node)

    def runtime_names(self) -> tuple[str, ...]:
        """Names a runtime's profiler may give this kernel's node (onnxruntime's NCHWc names too)."""
        # a batch norm on an NCHWc tensor runs as a 1x1 depthwise conv named "<output>_bn_nchwc"
        return (tuple(f"{o}_nchwc" for o in self.outputs) + tuple(f"{o}_bn_nchwc" for o in self.outputs)
                + self.outputs + (self.name,))

    def sig(self, keep: Sequence[int]) -> KernelSig:
        vals = {f: d.value(keep) for f, d in zip(_INT_FIELDS, self.dims)}
        return KernelSig(self.base.op, vals["cin"], vals["cout"], self.base.k, self.base.stride,
                         self.base.pads, vals["groups"], vals["h"], vals["w"], self.base.act,
                         self.base.residual, self.base.dtype)

    @property
    def groups_used(self) -> tuple[int, ...]:
        """Every group a field depends on (a concatenation's consumer reads several)."""
        return tuple(sorted({g for d in self.dims for g in d.groups}))


def kernel_templates(onnx_models: Sequence[bytes], solve,
                     kernels: Callable[[bytes], list[RawKernel]]) -> list[KernelTemplate]:
    """Templates from the dense and the tag-plan exports (see ``pruning._symbolic``);
    ``kernels`` is the runtime's kernel extraction (:meth:`hwprune.runtimes.Runtime.kernels`)."""
    lists = [kernels(d) for d in onnx_models]
    if len({len(x) for x in lists}) != 1 or any(
            [k.name for k in lists[0]] != [k.name for k in other] for other in lists[1:]):
        raise ConfigError("the runtime fused the pruned model differently from the dense one; "
                          "the kernel structure depends on channel counts")
    out = []
    for ks in zip(*lists):
        dense = ks[0]
        dims = tuple(solve(tuple(getattr(k.sig, f) for k in ks), f"kernel {dense.name} field {f}")
                     for f in _INT_FIELDS)
        out.append(KernelTemplate(dense.name, dense.sig, dims, dense.outputs))
    return out


assert set(_INT_FIELDS) <= {f.name for f in fields(KernelSig)}
