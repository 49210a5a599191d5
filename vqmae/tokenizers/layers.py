"""Building blocks shared by the audio (1-D) and visual (2-D) VQ-VAEs."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Activation = Literal["tanh", "relu"]
Norm = Literal["batch", "group", "none"]


def activation(name: str) -> nn.Module:
    if name == "tanh":
        return nn.Tanh()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation '{name}' (tanh, relu)")


def norm_layer(name: str, channels: int, dims: int) -> nn.Module:
    """'batch' (BatchNorm1d/2d), 'group' (GroupNorm, 8 groups or fewer), 'none' (Identity)."""
    if name == "batch":
        return nn.BatchNorm1d(channels) if dims == 1 else nn.BatchNorm2d(channels)
    if name == "group":
        groups = max(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{name}' (batch, group, none)")


def conv(dims: int, *args, **kwargs) -> nn.Module:
    return (nn.Conv1d if dims == 1 else nn.Conv2d)(*args, **kwargs)


def conv_transpose(dims: int, *args, **kwargs) -> nn.Module:
    return (nn.ConvTranspose1d if dims == 1 else nn.ConvTranspose2d)(*args, **kwargs)


class Residual(nn.Module):
    """x + conv1x1(act(conv3(act(x)))), both convolutions without bias (the reference block)."""

    def __init__(self, dims: int, channels: int, hidden: int, act: str):
        super().__init__()
        self.block = nn.Sequential(
            activation(act),
            conv(dims, channels, hidden, kernel_size=3, padding=1, bias=False),
            activation(act),
            conv(dims, hidden, channels, kernel_size=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResidualStack(nn.Module):
    """``layers`` residual blocks, then the activation: (B, C, *spatial) -> same shape."""

    def __init__(self, dims: int, channels: int, hidden: int, layers: int, act: str):
        super().__init__()
        self.layers = nn.ModuleList(Residual(dims, channels, hidden, act) for _ in range(layers))
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.act(x)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class eval_mode:
    """Context manager: ``module.eval()`` + ``torch.no_grad()`` inside, training flag restored after."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.was_training = module.training
        self._no_grad = torch.no_grad()

    def __enter__(self) -> nn.Module:
        self.module.eval()
        self._no_grad.__enter__()
        return self.module

    def __exit__(self, *exc) -> None:
        self._no_grad.__exit__(*exc)
        self.module.train(self.was_training)


def module_device(module: nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")
