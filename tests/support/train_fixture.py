"""A tiny regression problem for the training-loop tests (also run as a script under accelerate)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from vqmae.config import parse_config
from vqmae.runs import Run
from vqmae.training import TrainConfig, fit


def make_data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 1, generator=g)
    y = x @ w + 0.1 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def make_model() -> nn.Module:
    torch.manual_seed(123)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 1))


def loss_fn(model, batch, info):
    x, y = batch
    pred = model(x)
    loss = nn.functional.mse_loss(pred, y)
    return loss, {"mse": float(loss.detach())}


def train(out: str, cfg: TrainConfig, resume: bool = False, dropout: bool = True):
    model = make_model()
    if not dropout:
        model[2].p = 0.0
    run = Run(out, cfg, tensorboard=False)
    res = fit(model, make_data(), loss_fn, cfg, run, resume=resume)
    run.close()
    return res


if __name__ == "__main__":
    # python tests/support/train_fixture.py OUT key=value ...   (used under accelerate launch)
    out = sys.argv[1]
    cfg = parse_config(TrainConfig, sys.argv[2:])
    res = train(out, cfg, dropout=False)
    from accelerate import PartialState
    from safetensors.torch import save_file

    rank = PartialState().process_index
    sd = {k: v.contiguous() for k, v in res.model.state_dict().items()}
    save_file(sd, str(Path(out) / f"weights_rank{rank}.safetensors"))
