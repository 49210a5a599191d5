"""NT-Xent and the combined pretraining loss."""

import torch

from vqmae.mae import LossConfig, mae_loss, nt_xent


def test_nt_xent_gradient_flows_and_prefers_aligned_pairs():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 32, generator=g, requires_grad=True)
    v = (a.detach() + 0.1 * torch.randn(16, 32, generator=g)).requires_grad_()
    aligned = nt_xent(a, v, temperature=0.5)
    aligned.backward()
    assert a.grad is not None and a.grad.abs().sum() > 0 and v.grad.abs().sum() > 0
    shuffled = nt_xent(a.detach(), v.detach()[torch.randperm(16, generator=g)], temperature=0.5)
    assert aligned.item() < shuffled.item() - 0.5
    # a lower temperature sharpens: aligned pairs cost less
    assert nt_xent(a.detach(), v.detach(), temperature=0.1) < aligned


def test_mae_loss_weights_and_metrics():
    out = {"loss_sum_audio": torch.tensor(20.0), "count_audio": torch.tensor(10),
           "correct_audio": torch.tensor(4), "loss_sum_visual": torch.tensor(30.0),
           "count_visual": torch.tensor(10), "correct_visual": torch.tensor(1)}
    loss, m = mae_loss(out, LossConfig(audio_weight=1.0, visual_weight=0.5), ("audio", "visual"))
    assert loss.item() == 2.0 + 1.5
    assert m == {"loss_audio": 2.0, "acc_audio": 0.4, "loss_visual": 3.0, "acc_visual": 0.1}
