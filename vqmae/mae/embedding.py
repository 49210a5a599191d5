"""Patch embeddings of discrete tokens and the shared transformer building blocks.

A patch of ``P`` code indices becomes one token of the model width by concatenating a
learned embedding of each index (``P × e``; paper: 80 × 4 = 40 × 8 = 320). When
``P × e != width`` (other tokenizers) a linear projection bridges the two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import Mlp, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from vqmae.mae.config import MAEConfig, ModalitySpec


class CodeEmbedding(nn.Module):
    """``(B, N, P)`` code indices -> ``(B, N, width)``: per-index embeddings concatenated."""

    def __init__(self, spec: ModalitySpec, width: int):
        super().__init__()
        self.codes = nn.Embedding(spec.codebook_size, spec.embed_dim)
        self.indices, self.embed_dim = spec.indices, spec.embed_dim
        flat = spec.indices * spec.embed_dim
        self.proj = nn.Linear(flat, width) if flat != width else None

    @torch.no_grad()
    def init_from_codebook(self, codebook: torch.Tensor) -> None:
        """Start the embedding from the tokenizer's codebook ``(K, D)``: each code's vector,
        standardised per dimension, in the first ``min(D, e)`` dimensions (the rest zero), so
        that codes the tokenizer places close together start close together."""
        K, e = self.codes.weight.shape
        if codebook.shape[0] != K:
            raise ValueError(f"codebook of {codebook.shape[0]} vectors for {K} codes")
        cb = codebook.float()
        cb = (cb - cb.mean(0)) / cb.std(0).clamp_min(1e-6)
        d = min(cb.shape[1], e)
        self.codes.weight.zero_()
        self.codes.weight[:, :d] = cb[:, :d].to(self.codes.weight)

    def forward(self, patches: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """``reference (B, N, P, e)``: expected code embeddings subtracted before the projection
        (speaker normalisation, :mod:`vqmae.data.speaker_reference`)."""
        x = self.codes(patches)  # (B, N, P, e)
        if reference is not None:
            x = x - reference.to(x.dtype)
        x = rearrange(x, "b n p e -> b n (p e)")
        return self.proj(x) if self.proj is not None else x


class CodeHead(nn.Module):
    """Decoder output ``(..., width)`` -> per-index features ``(..., P, e)``; ``logits`` of them.

    Paper: the 320-d token is split into its 80 (or 40) slices of 4 (or 8) dims and a
    ``Linear(e -> codebook)`` shared across indices gives the logits.
    """

    def __init__(self, spec: ModalitySpec, width: int):
        super().__init__()
        self.indices, self.embed_dim = spec.indices, spec.embed_dim
        flat = spec.indices * spec.embed_dim
        self.proj = nn.Linear(width, flat) if flat != width else None
        self.out = nn.Linear(spec.embed_dim, spec.codebook_size)

    def split(self, h: torch.Tensor) -> torch.Tensor:
        """``(..., width)`` -> ``(..., P, e)``."""
        if self.proj is not None:
            h = self.proj(h)
        return h.unflatten(-1, (self.indices, self.embed_dim))

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """``(..., width)`` -> ``(..., P, codebook)``."""
        return self.out(self.split(h))


class CrossAttention(nn.Module):
    """Multi-head attention of ``x`` (queries) into ``ctx`` (keys/values), SDPA when ``fused_attn``."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = False):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.fused_attn = True

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        """``x (B, N, C)``, ``ctx (B, M, C)`` -> ``(B, N, C)``."""
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)
        k, v = rearrange(self.kv(ctx), "b m (two h d) -> two b h m d", two=2, h=self.heads).unbind(0)
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            out = attn.softmax(dim=-1) @ v
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class CrossBlock(nn.Module):
    """Pre-LN cross-attention block: ``x + attn(LN(x), LN(ctx))``, then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool = False):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_q(x), self.norm_kv(ctx))
        return x + self.mlp(self.norm2(x))


def make_blocks(cfg: MAEConfig, depth: int, heads: int) -> nn.ModuleList:
    """``depth`` timm pre-LN blocks (fused SDPA attention), width/MLP ratio/qkv bias of ``cfg``."""
    dpr = [cfg.drop_path * i / max(1, depth - 1) for i in range(depth)]
    return nn.ModuleList(
        Block(cfg.width, heads, mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, drop_path=dpr[i])
        for i in range(depth)
    )


class AttentionPool(nn.Module):
    """One learned query attending over a modality's tokens: ``(B, N, C)`` -> ``(B, C)``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, dim))
        self.norm = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, heads, qkv_bias=True)
        trunc_normal_(self.query, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.query.expand(x.shape[0], -1, -1)
        return self.attn(q, self.norm(x)).squeeze(1)


def init_weights(module: nn.Module) -> None:
    """MAE-style init: xavier-uniform linear layers, zero biases, unit LayerNorms.

    Code embeddings keep ``nn.Embedding``'s N(0, 1) (as the reference code).
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def sincos_pos_embed(grid: tuple[int, ...], width: int, temperature: float = 10000.0) -> torch.Tensor:
    """Factorised sine-cosine position codes of a patch grid ``(T, *S)``: ``(prod(grid), width)``.

    Each axis gets an even share of the channels (sin and cos of ``pos / temperature^(2i/d)``),
    concatenated in axis order; leftover channels are zero. Rows follow the patch order
    (time-major, as :func:`vqmae.mae.patching.patchify`).
    """
    n_axes = len(grid)
    d = 2 * (width // (2 * n_axes))
    if d == 0:
        return torch.zeros(int(torch.tensor(grid).prod()), width)
    freqs = 1.0 / temperature ** (torch.arange(0, d, 2, dtype=torch.float64) / d)      # (d/2,)
    coords = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in grid], indexing="ij")
    parts = []
    for c in coords:
        ang = c.reshape(-1, 1) * freqs[None]
        parts += [ang.sin(), ang.cos()]
    emb = torch.cat(parts, 1)
    if emb.shape[1] < width:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], width - emb.shape[1])], 1)
    return emb.float()
