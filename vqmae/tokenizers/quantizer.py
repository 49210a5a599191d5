"""Vector quantizer: vector-quantize-pytorch's ``VectorQuantize`` behind a small, tested interface.

    vq = VectorQuantizer(dim=8, cfg=QuantizerConfig(codebook_size=256))
    out = vq(z)                     # z (B, N, dim) -> out.quantized (B, N, dim), out.indices (B, N)
    vq.lookup(out.indices)          # (B, N, dim): in eval mode exactly ``out.quantized``

* EMA codebook (``decay``), commitment loss (``commitment_weight``), optional k-means init and
  dead-code replacement (``threshold_ema_dead_code``), optional cosine similarity and a
  low-dimensional lookup space (``codebook_dim``, with learned projections in and out).
* Quantization always runs in float32 with autocast off, whatever the surrounding precision
  (bf16 distances cost codebook usage).
* Data parallel: when a process group of more than one rank exists at construction, the EMA
  statistics, k-means init and dead-code sampling are all-reduced across ranks
  (``sync_codebook``), so every rank keeps the same codebook. Build the model after the
  accelerator (the training pipeline does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from vector_quantize_pytorch import VectorQuantize


@dataclass
class QuantizerConfig:
    """Settings of one vector quantizer (nested as ``quantizer`` in the tokenizer configs)."""

    codebook_size: int = 256
    """Number of codes K."""
    codebook_dim: int = 0
    """Dimension of the lookup space; 0 = the latent dimension (no projections)."""
    decay: float = 0.99
    """EMA decay of the codebook."""
    commitment_weight: float = 0.25
    kmeans_init: bool = False
    """Initialise the codebook by k-means on the first training batch."""
    kmeans_iters: int = 10
    threshold_ema_dead_code: float = 0.0
    """Codes whose EMA cluster size falls below this are re-sampled from the batch (0 = off)."""
    use_cosine_sim: bool = False
    """Cosine-similarity lookup (l2-normalised latents and codes)."""
    rotation_trick: bool = False
    """Gradient through the quantizer by the rotation trick (False: straight-through, as published)."""


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor
    """(B, N, dim) float32: codebook vectors (straight-through/rotation gradient in training)."""
    indices: torch.Tensor
    """(B, N) int64 in [0, K)."""
    commit_loss: torch.Tensor
    """() float32: commitment_weight × MSE(latent, sg(code)); 0 in eval mode."""


def _distributed_world() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


class VectorQuantizer(nn.Module):
    """EMA vector quantizer over the last dimension of (B, N, dim) latents."""

    def __init__(self, dim: int, cfg: QuantizerConfig):
        super().__init__()
        if cfg.codebook_size < 2 or cfg.codebook_size > 65536:
            raise ValueError(f"codebook_size must be in [2, 65536] (uint16 tokens), got {cfg.codebook_size}")
        self.dim = dim
        self.cfg = cfg
        codebook_dim = cfg.codebook_dim if cfg.codebook_dim > 0 else None
        self.sync_codebook = _distributed_world() > 1
        self.vq = VectorQuantize(
            dim=dim,
            codebook_size=cfg.codebook_size,
            codebook_dim=codebook_dim,
            decay=cfg.decay,
            commitment_weight=cfg.commitment_weight,
            kmeans_init=cfg.kmeans_init,
            kmeans_iters=cfg.kmeans_iters,
            threshold_ema_dead_code=cfg.threshold_ema_dead_code,
            use_cosine_sim=cfg.use_cosine_sim,
            rotation_trick=cfg.rotation_trick,
            straight_through=False,
            sync_codebook=self.sync_codebook,
            channel_last=True,
        )

    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def codebook(self) -> torch.Tensor:
        """(K, lookup dim) the current code vectors (in the lookup space)."""
        return self.vq.codebook

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """z: (B, N, dim) -> quantized (B, N, dim) float32, indices (B, N) int64, commit loss ()."""
        if z.ndim != 3 or z.shape[-1] != self.dim:
            raise ValueError(f"expected latents (B, N, {self.dim}), got {tuple(z.shape)}")
        waiting = [] if self.training else self._uninitialised_flags()
        for flag in waiting:  # eval never changes the codebook: no k-means init here
            flag.fill_(True)
        try:
            with torch.autocast(device_type=z.device.type, enabled=False):
                quantized, indices, loss = self.vq(z.float())
        finally:
            for flag in waiting:
                flag.fill_(False)
        return QuantizerOutput(quantized, indices.long(), loss.float().reshape(()))

    def _uninitialised_flags(self) -> list[torch.Tensor]:
        """The ``initted`` buffers of codebooks still waiting for their k-means init (an untrained
        model): in eval mode they are set for the call only, so encoding uses the codebook as it
        is and leaves the weights (and the fingerprint) unchanged."""
        flags = [getattr(m, "initted", None) for m in self.vq.modules()]
        return [f for f in flags if isinstance(f, torch.Tensor) and not bool(f)]

    @torch.no_grad()
    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (..., N) int -> (..., N, dim) float32: the latents the decoder sees in eval mode."""
        if indices.dtype not in (torch.int64, torch.int32):
            indices = indices.long()
        with torch.autocast(device_type=indices.device.type, enabled=False):
            flat = indices.reshape(-1, indices.shape[-1]) if indices.ndim != 2 else indices
            out = self.vq.get_output_from_indices(flat.long())
        return out.reshape(*indices.shape, self.dim).float()

    @torch.no_grad()
    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, N, dim) -> (B, N) int64 code indices (nearest codes; never updates the codebook)."""
        was_training = self.training
        self.eval()
        try:
            return self(z).indices
        finally:
            self.train(was_training)
