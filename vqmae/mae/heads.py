"""Classification / regression heads over per-modality feature sequences.

Every head maps ``features: {modality: (B, N_m, D_m)}`` (any subset of the modalities it was
built for) to outputs ``(B, num_outputs)``; ``pre_logits=True`` returns the vector the last
linear layer sees instead. Heads depend only on that mapping, never on the encoder, so they
serve any encoder that produces per-modality token features.

* :class:`PoolingHead` ``pool="attention"`` (paper): per modality one learned query attends over
  that modality's tokens (multi-head attention) → concat ``[audio ‖ visual]`` → Linear.
  ``pool="mean"``: mean over tokens instead. A modality absent at inference is replaced by a
  learned "missing" vector, so an audiovisual model can be evaluated on one modality.
* :class:`Query2EmoHead` (Query2Label): a small transformer decoder with one learned query per
  output (class or regression target) cross-attending to all tokens; output ``c`` is a
  per-query linear read-out (group FC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from einops import rearrange, repeat
from torch import nn


class AttentionPool(nn.Module):
    """One learned query, multi-head attention over ``(B, N, D)`` tokens → ``(B, D)``."""

    def __init__(self, dim: int, num_heads: int = 4):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.query, std=0.02)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = repeat(self.query, "1 1 d -> b 1 d", b=x.shape[0]).to(x.dtype)
        out, _ = self.attn(q, x, x, need_weights=False)
        return out[:, 0]


class MeanPool(nn.Module):
    """Mean over tokens: ``(B, N, D)`` → ``(B, D)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def _dims(modalities: Sequence[str], dim: int | Mapping[str, int]) -> dict[str, int]:
    if isinstance(dim, int):
        return {m: dim for m in modalities}
    missing = [m for m in modalities if m not in dim]
    if missing:
        raise ValueError(f"no feature width given for modalities {missing}")
    return {m: int(dim[m]) for m in modalities}


def _check_features(features: Mapping[str, torch.Tensor], modalities: Sequence[str]) -> None:
    present = [m for m in modalities if m in features]
    if not present:
        raise ValueError(f"the head needs at least one of {list(modalities)}; got {list(features)}")
    unknown = [m for m in features if m not in modalities]
    if unknown:
        raise ValueError(f"the head was built for {list(modalities)}, not {unknown}")


class PoolingHead(nn.Module):
    """Per-modality pooling (attention or mean) → concat → dropout → Linear(num_outputs)."""

    def __init__(self, modalities: Sequence[str], dim: int | Mapping[str, int], num_outputs: int,
                 pool: str = "attention", num_heads: int = 4, dropout: float = 0.1):
        super().__init__()
        if pool not in ("attention", "mean"):
            raise ValueError(f"unknown pooling '{pool}' (attention or mean)")
        self.modalities = list(modalities)
        self.dims = _dims(self.modalities, dim)
        self.pool_kind = pool
        self.pools = nn.ModuleDict({
            m: AttentionPool(d, num_heads) if pool == "attention" else MeanPool()
            for m, d in self.dims.items()
        })
        # stands in for a modality that is absent at inference (learned when modality dropout is on)
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.zeros(d)) for m, d in self.dims.items()})
        self.num_features = sum(self.dims.values())
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_outputs)

    @property
    def num_outputs(self) -> int:
        return self.fc.out_features

    def reset(self, num_outputs: int) -> None:
        self.fc = nn.Linear(self.num_features, num_outputs).to(self.fc.weight.device)

    def pooled(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(B, sum D_m)``: the concatenated per-modality vectors (missing ones filled in)."""
        _check_features(features, self.modalities)
        ref = next(features[m] for m in self.modalities if m in features)
        parts = []
        for m in self.modalities:
            if m in features:
                parts.append(self.pools[m](features[m]))
            else:
                parts.append(repeat(self.missing[m], "d -> b d", b=ref.shape[0]).to(ref.dtype))
        return torch.cat(parts, dim=-1)

    def forward(self, features: Mapping[str, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        x = self.pooled(features)
        if pre_logits:
            return x
        return self.fc(self.drop(x))


class Query2EmoHead(nn.Module):
    """Query2Label-style head: one learned query per output, a small transformer decoder over
    all tokens (each modality tagged with a learned embedding), a per-query linear read-out.

    features ``{m: (B, N_m, D_m)}`` → ``(B, num_outputs)``; ``pre_logits`` → ``(B, num_outputs × D)``.
    """

    def __init__(self, modalities: Sequence[str], dim: int | Mapping[str, int], num_outputs: int,
                 num_heads: int = 4, num_layers: int = 1, dropout: float = 0.1, width: int = 0):
        super().__init__()
        self.modalities = list(modalities)
        self.dims = _dims(self.modalities, dim)
        self.width = width or max(self.dims.values())
        self.proj = nn.ModuleDict({
            m: (nn.Identity() if d == self.width else nn.Linear(d, self.width)) for m, d in self.dims.items()
        })
        self.modality_embed = nn.ParameterDict({
            m: nn.Parameter(torch.zeros(1, 1, self.width)) for m in self.modalities
        })
        layer = nn.TransformerDecoderLayer(self.width, num_heads, dim_feedforward=2 * self.width,
                                           dropout=dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, num_layers=num_layers)
        self.norm = nn.LayerNorm(self.width)
        self._build_outputs(num_outputs)

    def _build_outputs(self, num_outputs: int) -> None:
        device = self.norm.weight.device
        self.queries = nn.Parameter(torch.zeros(num_outputs, self.width, device=device))
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.out_weight = nn.Parameter(torch.zeros(num_outputs, self.width, device=device))
        nn.init.trunc_normal_(self.out_weight, std=0.02)
        self.out_bias = nn.Parameter(torch.zeros(num_outputs, device=device))

    @property
    def num_outputs(self) -> int:
        return self.queries.shape[0]

    @property
    def num_features(self) -> int:
        return self.num_outputs * self.width

    def reset(self, num_outputs: int) -> None:
        self._build_outputs(num_outputs)

    def decode(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(B, num_outputs, width)``: one decoded vector per query."""
        _check_features(features, self.modalities)
        memory = torch.cat([self.proj[m](features[m]) + self.modality_embed[m].to(features[m].dtype)
                            for m in self.modalities if m in features], dim=1)
        q = repeat(self.queries, "c d -> b c d", b=memory.shape[0]).to(memory.dtype)
        return self.norm(self.decoder(q, memory))

    def forward(self, features: Mapping[str, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        h = self.decode(features)
        if pre_logits:
            return rearrange(h, "b c d -> b (c d)")
        return (h * self.out_weight).sum(-1) + self.out_bias


def make_head(kind: str, modalities: Sequence[str], dim: int | Mapping[str, int], num_outputs: int,
              num_heads: int = 4, dropout: float = 0.1, num_layers: int = 1) -> nn.Module:
    """``"attention"`` (paper), ``"mean"`` or ``"query2emo"``."""
    if kind in ("attention", "mean"):
        return PoolingHead(modalities, dim, num_outputs, pool=kind, num_heads=num_heads, dropout=dropout)
    if kind == "query2emo":
        return Query2EmoHead(modalities, dim, num_outputs, num_heads=num_heads,
                             num_layers=num_layers, dropout=dropout)
    raise ValueError(f"unknown head '{kind}' (attention, mean or query2emo)")
