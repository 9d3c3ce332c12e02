"""MobileNetV1 (Howard et al. 2017) and MobileNetV2 (Sandler et al. 2018)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["mobilenet_v1", "mobilenet_v2"]


def _cbr(cin: int, cout: int, k: int, stride: int, groups: int = 1,
         act: type = nn.ReLU6) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        act(inplace=True),
    )


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class MobileNetV1(nn.Module):
    # (pointwise output channels, stride of the depthwise conv)
    CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
           (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, num_classes: int = 1000, width: float = 1.0, in_channels: int = 3,
                 channels: list[int] | None = None) -> None:
        super().__init__()
        widths = channels or [int(c * width) for c, _ in self.CFG]
        stem = int(32 * width) if channels is None else max(8, widths[0] // 2)
        layers: list[nn.Module] = [_cbr(in_channels, stem, 3, 2)]
        cin = stem
        for cout, (_, stride) in zip(widths, self.CFG):
            layers.append(nn.Sequential(
                _cbr(cin, cin, 3, stride, groups=cin),  # depthwise
                _cbr(cin, cout, 1, 1),  # pointwise
            ))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        _init(self, "fan_in")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _init(model: nn.Module, mode: str = "fan_out") -> None:
    # PyTorch's default init lets activations vanish through MobileNetV1's 27 plain
    # layers; fan_in keeps their scale (fan_out counts a depthwise conv's output channels
    # as its fan and shrinks it). MobileNetV2 uses the reference fan_out init.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_cbr(cin, hidden, 1, 1))
        layers += [
            _cbr(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000, width: float = 1.0,
                 in_channels: int = 3) -> None:
        super().__init__()
        cin = _make_divisible(32 * width)
        last = _make_divisible(1280 * max(1.0, width))
        features: list[nn.Module] = [_cbr(in_channels, cin, 3, 2)]
        for t, c, n, s in self.CFG:
            cout = _make_divisible(c * width)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(_cbr(cin, last, 1, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v1(num_classes: int = 1000, width: float = 1.0,
                 in_channels: int = 3) -> MobileNetV1:
    return MobileNetV1(num_classes, width, in_channels)


def mobilenet_v2(num_classes: int = 1000, width: float = 1.0,
                 in_channels: int = 3) -> MobileNetV2:
    return MobileNetV2(num_classes, width, in_channels)
