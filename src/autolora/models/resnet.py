"""ResNet feature extractors: CIFAR-style (3 stages, widths 16/32/64) and torchvision's."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

SMALL_INPUT = 64  # inputs up to this size get the 3x3 stride-1 stem without max-pool


class CifarResNet(nn.Module):
    """The CIFAR ResNets of He et al. (2016): a 3x3 stem, then stages of basic blocks.

    Module names follow torchvision (``conv1``, ``layerN.i.downsample``), and shortcuts
    that change shape are 1x1 convolutions (option B), so a low-rank branch reaches them.
    """

    def __init__(self, blocks_per_stage: int, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        planes_in = widths[0]
        stages = []
        for index, width in enumerate(widths):
            stride = 1 if index == 0 else 2
            stages.append(self._stage(planes_in, width, blocks_per_stage, stride))
            planes_in = width
        for index, stage in enumerate(stages, start=1):
            self.add_module(f"layer{index}", stage)
        self.num_stages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = widths[-1]
        _init_weights(self)

    @staticmethod
    def _stage(planes_in: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for index in range(blocks):
            downsample = None
            if index == 0 and (stride != 1 or planes_in != planes):
                downsample = nn.Sequential(nn.Conv2d(planes_in, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
            layers.append(tv_resnet.BasicBlock(planes_in, planes, stride if index == 0 else 1, downsample))
            planes_in = planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return torch.flatten(self.avgpool(x), 1)


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def torchvision_resnet(name: str, in_channels: int, small_stem: bool) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its ``fc``; ``small_stem`` swaps in the 3x3 stride-1 stem, no max-pool.

    Returns the feature extractor and its feature dimension.
    """
    model = getattr(tv_resnet, name)(weights=None)
    if small_stem or in_channels != 3:
        kernel, stride, padding = (3, 1, 1) if small_stem else (7, 2, 3)
        model.conv1 = nn.Conv2d(in_channels, 64, kernel, stride, padding, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if small_stem:
        model.maxpool = nn.Identity()
    feature_dim = model.fc.in_features
    model.fc = nn.Identity()
    return model, feature_dim
