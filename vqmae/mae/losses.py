"""Pretraining losses: cross-entropy on masked code indices only, and NT-Xent.

The visual output layer of the paper model maps each of the 80 four-dimensional slices of a
decoder token to 512 logits. The reference code computes them for every index of every
tube (a 943 MB tensor per batch of 16) although only masked ones enter the loss.
:func:`masked_code_ce` takes only the masked slices, and on CPU computes the linear layer,
softmax, cross-entropy *and its gradients* chunk by chunk in one pass (as fused
linear-cross-entropy kernels do), so no ``(R, codebook)`` tensor is ever materialised and the
logits are never recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vqmae.config import setting

DEFAULT_CHUNK = 1024


class _FusedLinearCE(torch.autograd.Function):
    """sum_r CE(h_r W^T + b, t_r) and the number of correct argmax predictions.

    Forward and backward are computed together, chunk by chunk: per chunk of rows,
    ``logits = [h | 1] @ [W | b]^T`` (bias folded into the product), ``p = softmax(logits)``,
    ``loss -= log p[t]``, ``p[t] -= 1``, ``dh = p @ W`` and ``d[W | b]^T += [h | 1]^T @ p``.
    Only ``(R, e)`` and ``(K, e + 1)`` gradients are kept; ``backward`` just scales them.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, target, chunk):  # type: ignore[override]
        r, e = h.shape
        k = weight.shape[0]
        # layouts chosen for MKL's skinny products (measured): B operands given transposed
        w_aug_t = torch.cat([weight, bias[:, None]], 1).t().contiguous()   # (e + 1, K)
        w_t = w_aug_t[:e]                                                  # (e, K) = W^T
        h_aug = torch.cat([h, h.new_ones(r, 1)], 1)                        # (R, e + 1)
        need_grad = any(ctx.needs_input_grad[:3])
        gh = torch.empty_like(h) if need_grad else None
        gw_aug_t = torch.zeros_like(w_aug_t) if need_grad else None        # d[W | b]^T
        n = min(chunk, max(r, 1))
        logits_buf, p_buf = h.new_empty(n, k), h.new_empty(n, k)
        p_t = h.new_empty(r, 1)                                            # softmax at the target
        best_other = h.new_empty(r, 1)                                     # max softmax of other codes
        minus_one = h.new_full((n, 1), -1.0)
        t2 = target[:, None]
        for s in range(0, r, chunk):  # few, large ops per chunk (no per-row Python work)
            end = min(r, s + chunk)
            c, t, hs = end - s, t2[s:end], h_aug[s:end]
            logits = torch.mm(hs, w_aug_t, out=logits_buf[:c])
            p = torch.ops.aten._softmax.out(logits, 1, False, out=p_buf[:c])
            torch.gather(p, 1, t, out=p_t[s:end])
            p.scatter_add_(1, t, minus_one[:c])                            # p - onehot
            # p[t] - 1 < 0 <= the others: amax is the best other code (much cheaper than argmax);
            # correct only when the target beats every other code strictly (ties count as wrong)
            torch.amax(p, 1, keepdim=True, out=best_other[s:end])
            if need_grad:
                torch.mm(p, w_t.t(), out=gh[s:end])
                gw_aug_t.addmm_(hs.t(), p)
        logp = p_t.squeeze(1).log()
        tiny = (p_t.squeeze(1) < 1e-30).nonzero().squeeze(1)               # underflow: exact log-softmax
        if tiny.numel():
            lg = h_aug[tiny] @ w_aug_t
            logp[tiny] = lg.gather(1, target[tiny, None]).squeeze(1) - torch.logsumexp(lg, 1)
        loss = -logp.sum()
        correct = (p_t > best_other).sum()
        if need_grad:
            ctx.save_for_backward(gh, gw_aug_t)
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx, grad_loss, _grad_correct):  # type: ignore[override]
        gh, gw_aug_t = ctx.saved_tensors
        gw, gb = gw_aug_t[:-1].t() * grad_loss, gw_aug_t[-1] * grad_loss
        return gh * grad_loss, gw, gb, None, None


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
        return _FusedLinearCE.apply(h.contiguous(), weight, bias, target.contiguous(), chunk)
    logits = F.linear(h, weight, bias).float()
    loss = F.cross_entropy(logits, target.long(), reduction="sum")  # windows come as int32
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

    audio_weight: float = setting(1.0, ge=0, help="Weight of the masked audio-token cross-entropy.")
    visual_weight: float = setting(1.0, ge=0, help="Weight of the masked visual-token cross-entropy.")
    contrastive_weight: float = setting(0.0, ge=0)
    """NT-Xent between attention-pooled audio and visual clip vectors (0 = off)."""
    temperature: float = setting(0.5, gt=0, help="NT-Xent temperature.")


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
        if f"correct_{m}" in out:
            metrics[f"acc_{m}"] = float(out[f"correct_{m}"]) / float(count)
    if cfg.contrastive_weight > 0 and "pooled_audio" in out and "pooled_visual" in out:
        c = nt_xent(out["pooled_audio"], out["pooled_visual"], cfg.temperature)
        total = total + cfg.contrastive_weight * c
        metrics["contrastive"] = float(c.detach())
    assert total is not None
    return total, metrics
