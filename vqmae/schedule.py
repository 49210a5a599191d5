"""Learning rate, optimizer parameter groups and the epoch sampler of the training loop."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import Sampler

if TYPE_CHECKING:
    from vqmae.training import TrainConfig


def learning_rate(cfg: TrainConfig, effective_batch: int) -> float:
    """The peak LR: ``lr`` if set, else ``base_lr × effective_batch / 256`` (MAE rule)."""
    return cfg.lr if cfg.lr > 0 else cfg.base_lr * effective_batch / 256


def lr_at(step: int, peak: float, warmup: int, total: int, schedule: str = "cosine",
          min_lr: float = 0.0) -> float:
    """LR for optimizer step ``step`` (0-based): linear warm-up, then cosine to ``min_lr``."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return peak
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: biases, norms, embeddings' 1-D params and
    ``model.no_weight_decay()`` names are excluded (as in MAE/timm)."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or name in skip:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=cfg.betas)
    return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas)


class EpochBatchSampler(Sampler[list[int]]):
    """This rank's micro-batches of one epoch, a pure function of (seed, epoch).

    Global batch ``k`` is ``perm[k*B:(k+1)*B]`` with ``B = batch_size × world``; rank ``r`` takes
    ``[r*batch_size:(r+1)*batch_size]`` of it. Incomplete global batches are dropped.
    ``skip`` leaves out the first micro-batches (for resuming mid-epoch).
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                 world: int = 1, shuffle: bool = True, skip: int = 0):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.rank, self.world, self.shuffle, self.skip = rank, world, shuffle, skip

    def batches_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.skip)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 10_007 + self.epoch)
            perm = torch.randperm(self.n, generator=g).tolist()
        else:
            perm = list(range(self.n))
        gb = self.batch_size * self.world
        for k in range(self.skip, self.batches_per_epoch()):
            start = k * gb + self.rank * self.batch_size
            yield perm[start:start + self.batch_size]


