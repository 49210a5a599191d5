"""Vector quantizer: vector-quantize-pytorch's ``VectorQuantize`` behind a small, tested interface.

    vq = VectorQuantizer(dim=8, cfg=QuantizerConfig(codebook_size=256))
    out = vq(z)                     # z (B, N, dim) -> out.quantized (B, N, dim), out.indices (B, N)
    vq.lookup(out.indices)          # (B, N, dim): in eval mode exactly ``out.quantized``

* EMA codebook (``decay``), commitment loss (``commitment_weight``), optional k-means init and
  dead-code replacement (``threshold_ema_dead_code``), optional cosine similarity and a
  low-dimensional lookup space (``codebook_dim``, with learned projections in and out).
* Dead codes: ``threshold_ema_dead_code`` is a **count**: after each training step, every code
  whose EMA cluster size (the decayed number of latents assigned to it per batch) is below it is
  replaced by a latent of the batch, and its cluster size restarts at that count.
  vector-quantize-pytorch >= 1.21 expresses the threshold as ``dead_code_threshold_ratio``, a
  ratio of the mean cluster size (and reads a deprecated ``threshold_ema_dead_code`` >= 1 as
  ``count / codebook_size``, a much lower threshold, with a warning). We pass the ratio and set
  it before each replacement to ``count / mean cluster size``, which is the count rule exactly,
  whatever the batch size.
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
from vector_quantize_pytorch.vector_quantize_pytorch import Codebook

from vqmae.config import setting


@dataclass
class QuantizerConfig:
    """Settings of one vector quantizer (nested as ``quantizer`` in the tokenizer configs)."""

    codebook_size: int = setting(256, ge=2, le=65536, help="Number of codes K (uint16 tokens).")
    codebook_dim: int = setting(0, ge=0, help="Dimension of the lookup space; 0 = the latent "
                                "dimension (no projections).")
    decay: float = setting(0.99, ge=0, lt=1, help="EMA decay of the codebook.")
    commitment_weight: float = setting(0.25, ge=0, help="Weight of the commitment loss.")
    kmeans_init: bool = False
    """Initialise the codebook by k-means on the first training batch."""
    kmeans_iters: int = setting(10, ge=1, help="k-means iterations of the init.")
    threshold_ema_dead_code: float = setting(0.0, ge=0, help="Dead-code replacement: codes whose "
                                             "EMA cluster size (latents per batch) falls below this "
                                             "count are re-sampled from the batch (0 = off).")
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


class _CountThresholdCodebook(Codebook):
    """vector-quantize-pytorch's EMA codebook whose dead-code threshold is a count of latents per
    batch (``dead_code_min_count``): before each replacement the library's ratio (of the mean
    cluster size) is set to ``count / mean cluster size``; replaced codes restart at ``count``."""

    dead_code_min_count: float = 0.0

    def expire_codes_(self, batch_samples, seq_mask=None):
        if self.dead_code_min_count > 0:
            mean = float(self.cluster_size.mean().clamp(min=self.eps))
            ratio = self.dead_code_min_count / mean
            self.dead_code_threshold_ratio = self.reset_cluster_size_ratio = ratio
        return super().expire_codes_(batch_samples, seq_mask=seq_mask)


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
            # a placeholder in (0, 1) that turns replacement on; the count rule sets it per step
            dead_code_threshold_ratio=0.5 if cfg.threshold_ema_dead_code > 0 else 0.0,
            use_cosine_sim=cfg.use_cosine_sim,
            rotation_trick=cfg.rotation_trick,
            straight_through=False,
            sync_codebook=self.sync_codebook,
            channel_last=True,
        )
        if cfg.threshold_ema_dead_code > 0:
            codebook = self.vq._codebook
            if type(codebook) is not Codebook:
                raise TypeError(f"dead-code counts need vector-quantize-pytorch's Codebook, got {type(codebook)}")
            codebook.__class__ = _CountThresholdCodebook
            codebook.dead_code_min_count = float(cfg.threshold_ema_dead_code)

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
