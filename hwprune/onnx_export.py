"""ONNX export of dense and pruned models (static shape, fixed opset) and its check."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwprune._io import atomic_write
from hwprune.errors import ModelError

__all__ = ["OPSET", "INPUT_NAME", "OUTPUT_NAME", "to_onnx_bytes", "export_onnx", "check_onnx"]

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def to_onnx_bytes(model: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """Serialize ``model`` (eval mode) to an ONNX model with one static-shape input.

    Uses the TorchScript exporter: it folds BatchNorm into Conv and keeps module paths in
    node names, and unlike the dynamo exporter needs no onnxscript and writes no side file.
    """
    model = model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (torch.zeros(*input_shape),), buf, dynamo=False,
                              opset_version=OPSET, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], do_constant_folding=True)
        except Exception as exc:
            raise ModelError(f"ONNX export failed: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
    return buf.getvalue()


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path) -> Path:
    return atomic_write(path, to_onnx_bytes(model, input_shape))


def check_onnx(model: nn.Module, onnx_model: bytes | str | Path, input_shape: tuple[int, ...],
               seed: int = 0) -> float:
    """Run the ONNX model in onnxruntime and torch on one seeded input.

    Returns the max abs difference relative to the output scale (max abs of torch's output).
    """
    from hwprune.runtimes.ort import make_session

    x = torch.randn(*input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    src = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    sess = make_session(src, threads=1)
    out = sess.run(None, {INPUT_NAME: x.numpy()})[0]
    if out.shape != ref.shape:
        raise ModelError(f"onnxruntime output shape {out.shape} differs from torch {ref.shape}")
    scale = max(float(np.abs(ref).max()), 1e-12)
    return float(np.abs(out - ref).max()) / scale
