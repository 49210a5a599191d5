"""Fine-tuning losses: single-label asymmetric loss (paper), label-smoothed cross-entropy, CCC loss.

All take logits / predictions ``(B, C)`` and return a scalar mean over the valid rows
(class targets ``-1`` and NaN regression targets are ignored, so unlabelled rows are harmless).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AsymmetricLossSingleLabel(nn.Module):
    """Single-label asymmetric loss (Ridnik et al., ICCV 2021; ``ASLSingleLabel``), the paper's loss.

    With ``p = softmax(logits)`` and one-hot targets ``y``, each log-probability is weighted by
    ``(1 - p_c)^γ+`` for the target class and ``p_c^γ−`` for the others; the weighted
    log-probabilities meet label-smoothed targets ``y (1 - ε) + ε / C``::

        loss = - Σ_c ỹ_c · w_c · log p_c

    Paper values: ``γ− = 4``, ``γ+ = 0``, ``ε = 0.1``. With ``γ− = γ+ = 0`` it is exactly
    cross-entropy with label smoothing ``ε``. As in the reference code, gradients flow through
    the focusing weights too (they are not detached).
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, eps: float = 0.1):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.eps = gamma_neg, gamma_pos, eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits ``(B, C)`` float, target ``(B,)`` int64 in [0, C) or -1 (ignored) -> scalar."""
        valid = target >= 0
        if not bool(valid.any()):
            return logits.sum() * 0.0
        logits, target = logits[valid].float(), target[valid]
        num_classes = logits.shape[-1]
        log_p = F.log_softmax(logits, dim=-1)
        onehot = F.one_hot(target, num_classes).to(log_p.dtype)
        p = log_p.exp()
        # base of the focusing weight: 1 - p for the target class, p for the others
        base = onehot * (1 - p) + (1 - onehot) * p
        gamma = self.gamma_pos * onehot + self.gamma_neg * (1 - onehot)
        weight = torch.pow(base, gamma)
        smoothed = onehot * (1 - self.eps) + self.eps / num_classes
        return -(smoothed * weight * log_p).sum(dim=-1).mean()


class SmoothedCrossEntropy(nn.Module):
    """Cross-entropy with label smoothing (``ε = 0.1`` by default); targets ``-1`` are ignored."""

    def __init__(self, eps: float = 0.1):
        super().__init__()
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits ``(B, C)``, target ``(B,)`` int64 (-1 = ignore) -> scalar."""
        valid = target >= 0
        if not bool(valid.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[valid].float(), target[valid], label_smoothing=self.eps)


def ccc_torch(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Differentiable CCC of two ``(N,)`` tensors (population moments); NaN pairs dropped."""
    keep = torch.isfinite(x) & torch.isfinite(y)
    x, y = x[keep].float(), y[keep].float()
    if x.numel() < 2:
        return x.sum() * 0.0 + float("nan")
    mx, my = x.mean(), y.mean()
    vx, vy = ((x - mx) ** 2).mean(), ((y - my) ** 2).mean()
    cov = ((x - mx) * (y - my)).mean()
    return 2 * cov / (vx + vy + (mx - my) ** 2 + 1e-8)


class CCCLoss(nn.Module):
    """``1 - CCC`` averaged over the target dimensions (arousal, valence).

    pred, target ``(B, D)``; NaN targets are dropped per dimension; dimensions with fewer than
    two valid rows in the batch contribute nothing (a batch with none gives 0 with a gradient path).
    """

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        losses = []
        for d in range(pred.shape[-1]):
            c = ccc_torch(pred[:, d], target[:, d])
            if torch.isfinite(c):
                losses.append(1 - c)
        if not losses:
            return pred.sum() * 0.0
        return torch.stack(losses).mean()


def make_class_loss(name: str, label_smoothing: float = 0.1, gamma_neg: float = 4.0,
                    gamma_pos: float = 0.0) -> nn.Module:
    """``"asl"`` (paper: γ−=4, γ+=0, ε=0.1) or ``"ce"`` (label-smoothed cross-entropy)."""
    if name == "asl":
        return AsymmetricLossSingleLabel(gamma_neg, gamma_pos, label_smoothing)
    if name == "ce":
        return SmoothedCrossEntropy(label_smoothing)
    raise ValueError(f"unknown classification loss '{name}' (choose asl or ce)")
