"""Masking as pure, vectorised functions of a ``torch.Generator`` (1 = masked).

A :class:`Mask` of a batch keeps the same number of patches in every sample (so visible
tokens form a rectangular ``(B, K, C)`` tensor) but a different random subset per sample:

    ids_keep     (B, K)      patch ids given to the encoder
    ids_masked   (B, N - K)  patch ids the decoder must predict
    ids_restore  (B, N)      argsort of cat(ids_keep, ids_masked): puts tokens back in order
    mask         (B, N) bool 1 = masked (dropped from the encoder)

Kinds: ``random`` (any patch), ``tube`` (the same token positions masked at every time step,
i.e. whole tubes along time), ``frame`` (whole time steps). Ratios per modality are fixed or
drawn per batch from a Dirichlet (paper: (r_v, r_a) ~ Dir(1, 1), so r_a = 1 − r_v).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from vqmae.config import setting

MaskKind = Literal["random", "tube", "frame"]


@dataclass
class Mask:
    """Which patches of each sample are masked (see the module docstring for shapes)."""

    ids_keep: torch.Tensor
    ids_masked: torch.Tensor
    ids_restore: torch.Tensor

    @property
    def num_patches(self) -> int:
        return self.ids_restore.shape[1]

    @property
    def num_keep(self) -> int:
        return self.ids_keep.shape[1]

    @property
    def num_masked(self) -> int:
        return self.ids_masked.shape[1]

    @property
    def mask(self) -> torch.Tensor:
        """(B, N) bool, True (1) = masked."""
        b, n = self.ids_restore.shape
        m = torch.zeros(b, n, dtype=torch.bool, device=self.ids_restore.device)
        m.scatter_(1, self.ids_masked, True)
        return m

    def to(self, device: torch.device | str) -> Mask:
        return Mask(self.ids_keep.to(device), self.ids_masked.to(device), self.ids_restore.to(device))


def num_to_keep(num_patches: int, ratio: float, min_keep: int = 0, min_masked: int = 0) -> int:
    """``round(N × (1 − ratio))`` clamped to ``[min_keep, N − min_masked]``."""
    keep = int(round(num_patches * (1.0 - float(ratio))))
    return max(min_keep, min(num_patches - min_masked, keep))


def mask_from_noise(noise: torch.Tensor, num_keep: int) -> Mask:
    """The ``num_keep`` patches with the lowest noise are kept; ``noise`` is ``(B, N)``.

    Sorting is stable, so equal noise values (structured masks) keep their order.
    """
    ids_shuffle = torch.argsort(noise, dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    return Mask(ids_shuffle[:, :num_keep].contiguous(), ids_shuffle[:, num_keep:].contiguous(), ids_restore)


def random_mask(batch: int, num_patches: int, ratio: float, generator: torch.Generator,
                min_keep: int = 0, min_masked: int = 0) -> Mask:
    """Mask ``round(N × ratio)`` patches chosen uniformly per sample (1 = masked)."""
    noise = torch.rand(batch, num_patches, generator=generator)
    return mask_from_noise(noise, num_to_keep(num_patches, ratio, min_keep, min_masked))


def structured_mask(batch: int, grid: tuple[int, ...], ratio: float, kind: MaskKind,
                    generator: torch.Generator, min_keep: int = 0, min_masked: int = 0) -> Mask:
    """Mask patches of a grid ``(T, *S)`` (1 = masked).

    ``random``: any patches; ``tube``: token positions ``S`` masked at every time step
    (``round(prod(S) × ratio)`` of them); ``frame``: whole time steps (``round(T × ratio)``).
    Counts are rounded to whole groups; ``min_keep``/``min_masked`` count whole groups too.
    """
    n = math.prod(grid)
    if kind == "random":
        return random_mask(batch, n, ratio, generator, min_keep, min_masked)
    t, s = grid[0], math.prod(grid[1:])
    if kind == "tube":
        groups, size = s, t
        noise = torch.rand(batch, 1, s, generator=generator).expand(batch, t, s)
    elif kind == "frame":
        groups, size = t, s
        noise = torch.rand(batch, t, 1, generator=generator).expand(batch, t, s)
    else:
        raise ValueError(f"unknown mask kind '{kind}' (random, tube, frame)")
    keep_groups = num_to_keep(groups, ratio, min(min_keep, 1) if min_keep else 0,
                              min(min_masked, 1) if min_masked else 0)
    return mask_from_noise(noise.reshape(batch, n), keep_groups * size)


def dirichlet_ratios(alpha: tuple[float, ...], generator: torch.Generator) -> list[float]:
    """One draw of per-modality mask ratios from Dirichlet(alpha) (they sum to 1).

    Uses numpy's Dirichlet seeded from ``generator`` so the draw is reproducible.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    return [float(x) for x in np.random.default_rng(seed).dirichlet(np.asarray(alpha, dtype=np.float64))]


@dataclass
class MaskingConfig:
    """How pretraining masks each batch."""

    ratio_mode: Literal["dirichlet", "fixed"] = "dirichlet"
    """dirichlet: (r_visual, r_audio) ~ Dirichlet(alpha) per batch (paper); fixed: the ratios below.
    Unimodal models always use their fixed ratio."""
    dirichlet_alpha: tuple[float, float] = (1.0, 1.0)
    """(visual, audio) concentration; (1, 1) draws r_visual uniformly and r_audio = 1 − r_visual."""
    audio_ratio: float = setting(0.5, ge=0, le=1, help="Masked share of the audio patches (fixed mode).")
    visual_ratio: float = setting(0.5, ge=0, le=1, help="Masked share of the visual patches (fixed mode).")
    audio_kind: MaskKind = "random"
    """random: independent patches; tube / frame: whole groups of patches (see structured_mask)."""
    visual_kind: MaskKind = "random"
    """random: independent patches; tube / frame: whole groups of patches (see structured_mask)."""
    min_keep: int = setting(1, ge=0)
    """At least this many visible patches (groups for tube/frame masks) per modality."""
    min_masked: int = setting(1, ge=0)
    """At least this many masked patches per modality (so every loss term is defined)."""

    def ratios(self, modalities: tuple[str, ...], generator: torch.Generator) -> dict[str, float]:
        """Mask ratio of each modality for one batch."""
        if self.ratio_mode == "dirichlet" and set(modalities) == {"audio", "visual"}:
            r_v, r_a = dirichlet_ratios(self.dirichlet_alpha, generator)
            return {"audio": r_a, "visual": r_v}
        return {m: float(getattr(self, f"{m}_ratio")) for m in modalities}


def make_masks(grids: dict[str, tuple[int, ...]], batch: int, cfg: MaskingConfig,
               generator: torch.Generator, ratios: dict[str, float] | None = None) -> dict[str, Mask]:
    """One :class:`Mask` per modality for a batch; ``grids[m]`` is the patch grid ``(T, *S)``."""
    modalities = tuple(grids)
    ratios = ratios if ratios is not None else cfg.ratios(modalities, generator)
    return {
        m: structured_mask(batch, grids[m], ratios[m], getattr(cfg, f"{m}_kind"), generator,
                           cfg.min_keep, cfg.min_masked)
        for m in modalities
    }
