from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from hwprune._imports import import_user_module, is_path_spec
from hwprune.errors import ConfigError, ModelError
from hwprune.models._demo import demo_cnn
from hwprune.models._mobilenet import mobilenet_v1, mobilenet_v2
from hwprune.models._resnet import resnet18, resnet20, resnet34, resnet50, resnet56

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    description: str
    weights: str | None = None  # file in WEIGHTS_DIR, when trained weights ship


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("demo", demo_cnn, (1, 1, 28, 28),
                 "compact residual CNN for Fashion-MNIST (ships trained weights)",
                 weights="demo_cnn.pt"),
        ZooEntry("resnet18", resnet18, (1, 3, 224, 224), "ResNet-18, ImageNet layout"),
        ZooEntry("resnet34", resnet34, (1, 3, 224, 224), "ResNet-34, ImageNet layout"),
        ZooEntry("resnet50", resnet50, (1, 3, 224, 224), "ResNet-50 (bottleneck), ImageNet layout"),
        ZooEntry("mobilenet_v1", mobilenet_v1, (1, 3, 224, 224), "MobileNetV1 1.0, ImageNet layout"),
        ZooEntry("mobilenet_v2", mobilenet_v2, (1, 3, 224, 224), "MobileNetV2 1.0, ImageNet layout"),
        ZooEntry("resnet20", resnet20, (1, 3, 32, 32), "ResNet-20, CIFAR layout"),
        ZooEntry("resnet56", resnet56, (1, 3, 32, 32), "ResNet-56, CIFAR layout"),
    ]
}


@dataclass
class LoadedModel:
    """A model ready to prune: module in eval mode, its id and its static input shape."""

    model: nn.Module
    model_id: str
    input_shape: tuple[int, ...]
    weights: str | None = None
    spec: str = ""
    meta: dict = field(default_factory=dict)
    #: layers (module paths) the user pins: never pruned (``--keep-layers``)
    keep_layers: tuple[str, ...] = ()

    def example_input(self, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randn(*self.input_shape, generator=g)


def parse_input_shape(text: str) -> tuple[int, ...]:
    """Parse ``1x3x224x224`` (or ``1,3,224,224``) into a tuple of positive ints."""
    parts = re.split(r"[x,]", text.strip().lower())
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 4 or any(s <= 0 for s in shape):
        raise ConfigError(f"input shape must be NxCxHxW with positive integers, got '{text}'",
                          "for example --input-shape 1x3x224x224")
    return shape


def _import_factory(spec: str) -> tuple[Callable[..., nn.Module], str]:
    target, _, fname = spec.rpartition(":")
    if not target or not fname:
        raise ModelError(
            f"unknown model '{spec}'; known: {', '.join(ZOO)}",
            "or give a user model as path/to/file.py:factory or package.module:factory")
    module = import_user_module(target, "model", ModelError)
    model_id = f"{Path(target).name}:{fname}" if is_path_spec(target) else spec
    factory = getattr(module, fname, None)
    if not callable(factory):
        raise ModelError(f"'{target}' has no factory '{fname}'",
                         "name a function or class that returns an nn.Module")
    return factory, model_id


def load_model(spec: str, weights: str | Path | None = None,
               input_shape: str | tuple[int, ...] | None = None,
               pretrained: bool = True) -> LoadedModel:
    """Build a zoo or user model, load a state_dict and fix its input shape.

    >>> lm = load_model("resnet20")
    >>> lm.input_shape
    (1, 3, 32, 32)
    """
    if isinstance(input_shape, str):
        input_shape = parse_input_shape(input_shape)
    entry = ZOO.get(spec)
    if entry is not None:
        model = entry.factory()
        model_id = entry.name
        shape = tuple(input_shape) if input_shape else entry.input_shape
        if weights is None and pretrained and entry.weights and (WEIGHTS_DIR / entry.weights).is_file():
            weights = WEIGHTS_DIR / entry.weights
    else:
        factory, model_id = _import_factory(spec)
        try:
            model = factory()
        except Exception as exc:
            raise ModelError(f"calling factory of '{spec}' failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(model, nn.Module):
            raise ModelError(f"factory of '{spec}' returned {type(model).__name__}, not an nn.Module")
        if input_shape is None:
            shape = getattr(model, "input_shape", None)
            if shape is None:
                raise ConfigError(f"user model '{spec}' needs an input shape",
                                  "pass --input-shape NxCxHxW, e.g. 1x3x224x224")
            shape = tuple(shape)
        else:
            shape = tuple(input_shape)
    if weights is not None:
        _load_weights(model, Path(weights), spec)
    model.eval()
    lm = LoadedModel(model, model_id, shape, str(weights) if weights else None, spec)
    _check_forward(lm)
    return lm


def _load_weights(model: nn.Module, path: Path, spec: str) -> None:
    if not path.is_file():
        raise ModelError(f"weights file '{path}' {'is a folder' if path.is_dir() else 'does not exist'}",
                         "pass a state_dict saved with torch.save(model.state_dict(), PATH)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never run pickled code
    except Exception as exc:
        raise ModelError(f"weights file '{path}' {_weights_problem(path, exc)}",
                         "pass a state_dict saved with torch.save(model.state_dict(), PATH)") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"weights '{path}' are not a state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(line.strip() for line in first[1:3]) or first[0]
        raise ModelError(f"weights '{path}' do not fit model '{spec}': {detail}") from exc


def _weights_problem(path: Path, exc: Exception) -> str:
    """What is wrong with a weights file torch cannot load, in a few words (torch's own
    messages run to paragraphs)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if not head:
        return "is empty"
    if not (head.startswith(b"PK") or head.startswith(b"\x80")):
        return "is not a file saved by torch.save (neither a PyTorch zip archive nor a pickle)"
    if "Weights only load failed" in str(exc):
        return ("holds Python objects besides tensors (e.g. a whole pickled model), which hwprune "
                "does not unpickle")
    return f"is damaged ({type(exc).__name__} while reading it)"


def _check_forward(lm: LoadedModel) -> None:
    try:
        with torch.no_grad():
            lm.model(torch.zeros(*lm.input_shape))
    except Exception as exc:
        shape = "x".join(map(str, lm.input_shape))
        raise ModelError(f"model '{lm.spec}' does not run on input {shape}: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
                         "check --input-shape") from exc
