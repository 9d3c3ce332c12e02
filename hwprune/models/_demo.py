"""The demo CNN: a compact residual network for 1x28x28 images (Fashion-MNIST).

Wide enough (up to 128 channels) and deep enough (a stem, three stages, two residual
blocks in the last two) that channel pruning changes both accuracy and latency.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["demo_cnn"]


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _cbr(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.bn2(self.conv2(self.conv1(x))))


class DemoCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 widths: tuple[int, int, int] = (32, 64, 128)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem = _cbr(in_channels, w1)                       # 28x28
        self.stage1 = nn.Sequential(_cbr(w1, w1), _cbr(w1, w2, 2))  # -> 14x14
        self.stage2 = nn.Sequential(ResBlock(w2), _cbr(w2, w3, 2))  # -> 7x7
        self.stage3 = nn.Sequential(ResBlock(w3), ResBlock(w3))
        self.head = nn.Sequential(nn.Conv2d(w3, 2 * w3, 1, bias=False),
                                  nn.BatchNorm2d(2 * w3), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(self.head(x)), 1))


def demo_cnn(num_classes: int = 10, in_channels: int = 1) -> DemoCNN:
    return DemoCNN(num_classes, in_channels)
