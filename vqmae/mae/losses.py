"""Pretraining losses: cross-entropy on masked code indices only, and NT-Xent.

The visual output layer of the paper model maps each of the 80 four-dimensional slices of a
decoder token to 512 logits. The reference code computes them for every index of every
tube (a 943 MB tensor per batch of 16) although only masked ones enter the loss.
:func:`masked_code_ce` takes only the masked slices, and on CPU computes the linear layer,
log-softmax and cross-entropy chunk by chunk in one autograd function (recomputing the
logits in backward), so no ``(R, codebook)`` tensor is ever materialised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

DEFAULT_CHUNK = 2048


class _ChunkedLinearCE(torch.autograd.Function):
    """sum_r CE(h_r W^T + b, t_r) and the number of correct argmax predictions."""

    @staticmethod
    def forward(ctx, h, weight, bias, target, chunk):  # type: ignore[override]
        r, k = h.shape[0], weight.shape[0]
        lse = h.new_empty(r)
        loss = h.new_zeros(())
        correct = torch.zeros((), dtype=torch.long, device=h.device)
        buf = h.new_empty(min(chunk, max(r, 1)), k)
        wt = weight.t()
        for s in range(0, r, chunk):
            e = min(r, s + chunk)
            logits = torch.addmm(bias, h[s:e], wt, out=buf[: e - s])
            tl = logits.gather(1, target[s:e, None]).squeeze(1)
            correct += (logits.argmax(1) == target[s:e]).sum()
            torch.logsumexp(logits, 1, out=lse[s:e])
            loss += (lse[s:e] - tl).sum()
        ctx.save_for_backward(h, weight, bias, target, lse)
        ctx.chunk = chunk
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx, grad_loss, _grad_correct):  # type: ignore[override]
        h, weight, bias, target, lse = ctx.saved_tensors
        chunk = ctx.chunk
        r, k = h.shape[0], weight.shape[0]
        gh = torch.empty_like(h)
        gw = torch.zeros_like(weight)
        gb = torch.zeros_like(bias)
        buf = h.new_empty(min(chunk, max(r, 1)), k)
        wt = weight.t()
        for s in range(0, r, chunk):
            e = min(r, s + chunk)
            p = torch.addmm(bias, h[s:e], wt, out=buf[: e - s])
            p.sub_(lse[s:e, None]).exp_()                     # softmax
            p.scatter_add_(1, target[s:e, None], p.new_full((e - s, 1), -1.0))  # - onehot
            p.mul_(grad_loss)
            torch.mm(p, weight, out=gh[s:e])
            gw.addmm_(p.t(), h[s:e])
            gb.add_(p.sum(0))
        return gh, gw, gb, None, None


def masked_code_ce(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, target: torch.Tensor,
                   fused: bool | None = None, chunk: int = DEFAULT_CHUNK
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of ``logits = h W^T + b`` against ``target``, and the count of
    correct argmax predictions.

    ``h (R, e)`` per-index features of masked patches only, ``weight (K, e)``, ``bias (K,)``,
    ``target (R,)`` int64. ``fused`` (default: on CPU) uses the chunked autograd function;
    otherwise a plain ``F.linear`` + ``F.cross_entropy`` in fp32 (GPU, autocast).
    """
    if fused is None:
        fused = h.device.type == "cpu" and h.dtype == torch.float32
    if fused:
        return _ChunkedLinearCE.apply(h.contiguous(), weight, bias, target.contiguous(), chunk)
    logits = F.linear(h, weight, bias).float()
    loss = F.cross_entropy(logits, target, reduction="sum")
    correct = (logits.detach().argmax(1) == target).sum()
    return loss, correct


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent (SimCLR) between paired clip vectors ``a (B, D)`` and ``b (B, D)``.

    Each of the 2B vectors has one positive (its pair) and 2B − 2 negatives; cosine
    similarity divided by ``temperature``; mean over the 2B anchors.
    """
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b], 0).float(), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sim.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(sim.device)
    return F.cross_entropy(sim, target)


@dataclass
class LossConfig:
    """Weights of the pretraining loss terms."""

    audio_weight: float = 1.0
    visual_weight: float = 1.0
    contrastive_weight: float = 0.0
    """NT-Xent between attention-pooled audio and visual clip vectors (0 = off)."""
    temperature: float = 0.5


def mae_loss(out: dict[str, torch.Tensor], cfg: LossConfig, modalities: tuple[str, ...]
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """Combine the model's per-modality sums (``VQMAEAV.forward``) into the training loss.

    ``loss = Σ_m w_m · CE_m + w_c · NT-Xent`` with ``CE_m`` the mean over masked indices.
    Metrics: ``loss_<m>``, ``acc_<m>`` (masked-token accuracy), ``contrastive``.
    """
    total = None
    metrics: dict[str, float] = {}
    for m in modalities:
        count = out[f"count_{m}"].clamp_min(1)
        ce = out[f"loss_sum_{m}"] / count
        term = getattr(cfg, f"{m}_weight") * ce
        total = term if total is None else total + term
        metrics[f"loss_{m}"] = float(ce.detach())
        metrics[f"acc_{m}"] = float(out[f"correct_{m}"]) / float(count)
    if cfg.contrastive_weight > 0 and "pooled_audio" in out and "pooled_visual" in out:
        c = nt_xent(out["pooled_audio"], out["pooled_visual"], cfg.temperature)
        total = total + cfg.contrastive_weight * c
        metrics["contrastive"] = float(c.detach())
    assert total is not None
    return total, metrics
