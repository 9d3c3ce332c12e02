"""Kernel signatures: the typed key of a latency table entry."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = ["KernelSig", "RawKernel", "OPS"]

#: Kernel kinds. ``conv`` covers dense, grouped and depthwise convolutions (BN folded,
#: activation and an optional residual add fused); ``deconv`` a transposed convolution;
#: ``add`` is a residual add that the runtime did not fuse; ``gemm`` a fully connected
#: layer (``act``: the activation onnxruntime fuses into it, FusedGemm); ``mul`` an
#: element-wise product of equal shapes, ``scale`` one with a broadcast operand (an SE
#: gate); ``act`` a standalone activation (``silu``, ``hardswish``, ``gelu``...); ``bn`` a
#: batch norm the exporter could not fold. Data movement: ``concat`` (``cin = cout`` =
#: output channels, ``groups`` = inputs), ``split`` (``cout`` = first output, ``groups`` =
#: outputs), ``slice``, ``transpose``, ``unsqueeze``, ``flatten`` (also reshapes),
#: ``pad_<mode>``, ``resize_<mode>`` (``stride`` = the integer scale), pooling (``maxpool``,
#: ``avgpool``, ``gap``, ``reducemean``). Channels of a rank-5 tensor (a channel shuffle's
#: ``N x G x C/G x H x W``) count ``G * C/G``.
OPS = ("conv", "add", "gemm", "maxpool", "avgpool", "gap", "flatten", "act", "concat", "other",
       "deconv", "mul", "scale", "bn", "split", "slice", "transpose", "unsqueeze", "reducemean",
       "pad_constant", "pad_reflect", "pad_edge", "resize_nearest", "resize_linear", "resize_cubic")


@dataclass(frozen=True, order=True)
class KernelSig:
    """One kernel as the runtime runs it.

    ``cin``/``cout`` are channels (features for ``gemm``), ``h``/``w`` the *input*
    spatial size, ``k``/``stride`` the window (square kernels are stored as e.g. ``k=(3, 3)``),
    ``pads`` as ONNX orders them (top, left, bottom, right), ``act`` the fused activation
    (``none``, ``relu``, ``relu6``, ``clip``, ``sigmoid``, ``hardswish``...), ``residual``
    whether a residual add is fused into the kernel, ``dtype`` the element type.
    """

    op: str
    cin: int
    cout: int
    k: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups: int = 1
    h: int = 1
    w: int = 1
    act: str = "none"
    residual: bool = False
    dtype: str = "float32"

    @property
    def key(self) -> str:
        """Canonical string form, stable across versions (used as the table key)."""
        return (f"{self.op}|cin={self.cin}|cout={self.cout}|k={self.k[0]}x{self.k[1]}"
                f"|s={self.stride[0]}x{self.stride[1]}|p={','.join(map(str, self.pads))}"
                f"|g={self.groups}|hw={self.h}x{self.w}|act={self.act}"
                f"|res={int(self.residual)}|{self.dtype}")

    @classmethod
    def from_key(cls, key: str) -> "KernelSig":
        parts = key.split("|")
        kv = dict(p.split("=", 1) for p in parts[1:-1])
        k0, k1 = kv["k"].split("x")
        s0, s1 = kv["s"].split("x")
        h, w = kv["hw"].split("x")
        return cls(op=parts[0], cin=int(kv["cin"]), cout=int(kv["cout"]), k=(int(k0), int(k1)),
                   stride=(int(s0), int(s1)), pads=tuple(int(p) for p in kv["p"].split(",")),
                   groups=int(kv["g"]), h=int(h), w=int(w), act=kv["act"],
                   residual=bool(int(kv["res"])), dtype=parts[-1])

    @property
    def out_hw(self) -> tuple[int, int]:
        if self.op in ("gap",):
            return (1, 1)
        if self.op == "deconv":
            return ((self.h - 1) * self.stride[0] - self.pads[0] - self.pads[2] + self.k[0],
                    (self.w - 1) * self.stride[1] - self.pads[1] - self.pads[3] + self.k[1])
        if self.op.startswith("resize_"):
            return (self.h * self.stride[0], self.w * self.stride[1])
        if self.op.startswith("pad_"):
            return (self.h + self.pads[0] + self.pads[2], self.w + self.pads[1] + self.pads[3])
        if self.op in ("conv", "maxpool", "avgpool"):
            ho = (self.h + self.pads[0] + self.pads[2] - self.k[0]) // self.stride[0] + 1
            wo = (self.w + self.pads[1] + self.pads[3] - self.k[1]) // self.stride[1] + 1
            return (ho, wo)
        return (self.h, self.w)

    @property
    def macs(self) -> int:
        """Multiply-accumulates (0 for kernels that do no multiplication)."""
        ho, wo = self.out_hw
        if self.op == "conv":
            return ho * wo * self.cout * (self.cin // self.groups) * self.k[0] * self.k[1]
        if self.op == "deconv":
            return self.h * self.w * self.cin * (self.cout // self.groups) * self.k[0] * self.k[1]
        if self.op == "gemm":
            return self.cin * self.cout * self.h * self.w
        return 0

    def bytes_moved(self, elem_bytes: int = 4) -> int:
        """Bytes read and written assuming each tensor is touched once (weights included)."""
        ho, wo = self.out_hw
        act_in = self.cin * self.h * self.w
        act_out = self.cout * ho * wo
        weights = 0
        if self.op in ("conv", "deconv"):
            weights = self.cout * (self.cin // self.groups) * self.k[0] * self.k[1] + self.cout
            if self.residual:
                act_in += act_out
        elif self.op == "gemm":
            weights = self.cin * self.cout + self.cout
        elif self.op in ("add", "mul"):
            act_in *= 2
        elif self.op == "scale":
            act_in += self.cin
        elif self.op == "bn":
            weights = 2 * self.cin
        return elem_bytes * (act_in + act_out + weights)

    def as_row(self) -> dict:
        d = asdict(self)
        d["k"] = f"{self.k[0]}x{self.k[1]}"
        d["stride"] = f"{self.stride[0]}x{self.stride[1]}"
        d["pads"] = ",".join(map(str, self.pads))
        return d


SIG_FIELDS = [f.name for f in fields(KernelSig)]


@dataclass(frozen=True)
class RawKernel:
    """One kernel of a concrete model, as a runtime reports it."""

    name: str        # ONNX node name of the kernel's main node
    sig: KernelSig
    outputs: tuple[str, ...] = ()  # tensors of the fused chain: the runtime names its node after one
