"""Fixtures for the compile tests: tiny ONNX CNNs and fake finished search runs."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import nn

from hwprune.pruning import PruningPlan
from hwprune.rundir import RunDir, RunSummary


class TinyCNN(nn.Module):
    """Conv-BN-ReLU, a residual conv pair, pooling and a linear head: the op mix of the zoo."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.c1 = nn.Conv2d(width, width, 3, 1, 1)
        self.c2 = nn.Conv2d(width, width, 3, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.c2(torch.relu(self.c1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


INPUT_SHAPE = (1, 3, 16, 16)


def export_onnx(model: nn.Module, path: Path, shape: tuple[int, ...] = INPUT_SHAPE) -> Path:
    torch.manual_seed(0)
    model.eval()
    with torch.no_grad():  # random BN statistics so BN folding is exercised
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    torch.onnx.export(model, (torch.randn(*shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["output"])
    return path


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """Write a fake search run ("finished" or "running"); keyword args override summary fields."""

    def _make(name: str = "run", *, status: str = "finished", device: str = "host",
              predicted_latency_ms: float = 1000.0, files: tuple[str, ...] = ("model.onnx", "plan.json"),
              width: int = 8) -> Path:
        run = RunDir.create(tmp_path / name)
        run.path.mkdir()
        if "model.onnx" in files:
            torch.manual_seed(0)
            export_onnx(TinyCNN(width), run.file(RunDir.ONNX))
        if "plan.json" in files:
            run.write_plan(PruningPlan("tiny", INPUT_SHAPE, {"c1": width}, {"c1": width}))
        if status == "running":
            run.mark_running()
            return run.path
        assert status == "finished", status
        run.finish(RunSummary(device=device, predicted_latency_ms=predicted_latency_ms,
                              accuracy={"top1": 0.5, "dense_top1": 0.55}, files=list(files)))
        return run.path

    return _make
