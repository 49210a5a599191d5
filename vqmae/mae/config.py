"""The VQ-MAE-AV model config (one dataclass) and its named presets.

Token geometry (shapes, codebooks, frames per window) comes from the tokenizers; the
architecture (patch sizes, width, depth, heads, fusion) from a preset. :func:`cfg_for_store`
builds a config matching a token store's provenance, so tokenizers other than the paper's
(other grids or codebooks) work as long as the patch sizes divide the token grid.

Paper preset (the published VQ-MAE-AV, Sadok et al., arXiv 2305.03568)::

    visual tokens (50, 24, 24) codebook 512, tube (5, 4, 4) = 80 indices × 4-d -> 360 tubes
    audio  tokens (100, 64)    codebook 256, patch (10, 4)  = 40 indices × 8-d -> 160 patches
    width 320, 4 heads, MLP ratio 2, qkv without bias, encoder depth 6/12/16/20, decoder 3
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from vqmae.config import ConfigError, config_from_dict, config_to_dict, setting
from vqmae.data.clips import WINDOW_SECONDS

MODALITIES = ("audio", "visual")


class MAEConfigError(ConfigError):
    """A config whose patch sizes do not fit the token grid, or other inconsistent sizes."""


@dataclass
class MAEConfig:
    """Everything that fixes the shapes of a VQ-MAE-AV model."""

    modalities: tuple[str, ...] = ("audio", "visual")
    """Modalities the model sees: both (VQ-MAE-AV), ("audio",) (VQ-MAE-S) or ("visual",)."""
    # ---- audio tokens (from the audio tokenizer)
    audio_token_shape: tuple[int, ...] = (64,)
    audio_codebook_size: int = setting(256, ge=2)
    audio_frames: int = setting(100, ge=1)
    """Token frames per window (2 s at 50 frames/s)."""
    audio_fps: float = setting(50.0, gt=0)
    audio_patch: tuple[int, ...] = (10, 4)
    """(frames, *per token axis): 10 frames × 4 latent positions = 40 indices per patch."""
    audio_embed_dim: int = setting(8, ge=1)
    """Learned embedding size of one code index."""
    # ---- visual tokens (from the visual tokenizer)
    visual_token_shape: tuple[int, ...] = (24, 24)
    visual_codebook_size: int = setting(512, ge=2)
    visual_frames: int = setting(50, ge=1)
    visual_fps: float = setting(25.0, gt=0)
    visual_patch: tuple[int, ...] = (5, 4, 4)
    """(frames, height, width) of a tube: 5 × 4 × 4 = 80 indices."""
    visual_embed_dim: int = setting(4, ge=1)
    # ---- transformer
    width: int = setting(320, ge=1, help="Transformer width.")
    depth: int = setting(6, ge=1, help="Encoder blocks.")
    heads: int = setting(4, ge=1, help="Encoder attention heads.")
    mlp_ratio: float = setting(2.0, gt=0, help="MLP hidden size / width.")
    qkv_bias: bool = False
    fusion: Literal["saf", "caf"] = "saf"
    """saf: one joint self-attention sequence; caf: per-modality cross-attention into the
    concatenation of both, then per-modality blocks."""
    decoder_depth: int = setting(3, ge=1, help="Decoder blocks.")
    decoder_heads: int = setting(4, ge=1, help="Decoder attention heads.")
    decoder_fusion: Literal["saf", "caf"] = "saf"
    drop_path: float = setting(0.0, ge=0, lt=1, help="Stochastic depth rate.")
    pos_init: Literal["random", "sincos"] = "random"
    """Start of the learned positional embeddings: random (paper, truncated normal 0.02) or
    factorised sine-cosine codes of the patch grid (time × token axes), which give a new model
    the grid's neighbourhoods from the first step (still trained)."""
    contrastive: bool = False
    """Add attention-pooling heads (one learned query per modality) for the NT-Xent term."""

    # ------------------------------------------------------------------ derived geometry
    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        for m in self.modalities:
            if m not in MODALITIES:
                raise MAEConfigError(f"unknown modality '{m}' (known: {', '.join(MODALITIES)})")
        if not self.modalities:
            raise MAEConfigError("modalities is empty")
        if len(set(self.modalities)) != len(self.modalities):
            raise MAEConfigError(f"modalities repeated: {self.modalities}")
        if self.width % self.heads or self.width % self.decoder_heads:
            raise MAEConfigError(f"width {self.width} is not divisible by heads {self.heads}/{self.decoder_heads}")
        if "caf" in (self.fusion, self.decoder_fusion) and len(self.modalities) < 2:
            raise MAEConfigError("fusion 'caf' needs two modalities; use 'saf' for a unimodal model")
        for m in self.modalities:
            self.spec(m)  # validates the patch sizes

    def spec(self, modality: str) -> ModalitySpec:
        """The patch geometry of one modality (validated)."""
        p = modality
        return ModalitySpec.build(
            modality,
            frames=getattr(self, f"{p}_frames"),
            token_shape=tuple(getattr(self, f"{p}_token_shape")),
            patch=tuple(getattr(self, f"{p}_patch")),
            codebook_size=getattr(self, f"{p}_codebook_size"),
            embed_dim=getattr(self, f"{p}_embed_dim"),
            fps=getattr(self, f"{p}_fps"),
        )

    @property
    def specs(self) -> dict[str, ModalitySpec]:
        return {m: self.spec(m) for m in self.modalities}

    @property
    def window_seconds(self) -> float:
        m = self.modalities[0]
        s = self.spec(m)
        return s.frames / s.fps

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MAEConfig:
        return config_from_dict(cls, data)


@dataclass(frozen=True)
class ModalitySpec:
    """Patch geometry of one modality.

    Tokens ``(B, frames, *token_shape)`` are cut into patches of ``patch`` =
    ``(pt, *ps)``; ``grid`` = ``(frames // pt, *token_shape // ps)`` patches,
    ``num_patches = prod(grid)``, each holding ``indices = prod(patch)`` code indices.
    """

    name: str
    frames: int
    token_shape: tuple[int, ...]
    patch: tuple[int, ...]
    codebook_size: int
    embed_dim: int
    fps: float
    grid: tuple[int, ...] = field(default=())

    @staticmethod
    def build(name: str, frames: int, token_shape: tuple[int, ...], patch: tuple[int, ...],
              codebook_size: int, embed_dim: int, fps: float) -> ModalitySpec:
        full = (frames, *token_shape)
        if len(patch) != len(full):
            raise MAEConfigError(
                f"{name}_patch {tuple(patch)} has {len(patch)} sizes but the {name} tokens of a window "
                f"have {len(full)} axes {full} (frames, *token_shape)"
            )
        bad = [(i, n, p) for i, (n, p) in enumerate(zip(full, patch)) if p < 1 or n % p]
        if bad:
            axes = ["frames"] + [f"token axis {i}" for i in range(1, len(full))]
            what = "; ".join(
                f"{axes[i]}: {p} does not divide {n} (divisors: {', '.join(map(str, divisors(n)))})"
                for i, n, p in bad
            )
            raise MAEConfigError(
                f"{name}_patch {tuple(patch)} does not fit the {name} token grid {full}: {what}. "
                f"Set {name}_patch to sizes that divide the grid."
            )
        if codebook_size < 2 or embed_dim < 1:
            raise MAEConfigError(f"{name}: codebook_size {codebook_size} / embed_dim {embed_dim} too small")
        grid = tuple(n // p for n, p in zip(full, patch))
        return ModalitySpec(name, frames, tuple(token_shape), tuple(patch), codebook_size, embed_dim,
                            fps, grid)

    @property
    def num_patches(self) -> int:
        return math.prod(self.grid)

    @property
    def indices(self) -> int:
        """Code indices per patch."""
        return math.prod(self.patch)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# ------------------------------------------------------------------------------- presets

PAPER_DEPTHS = (6, 12, 16, 20)

def preset_names() -> list[str]:
    """The named architectures of ``vqmae/presets/mae.yaml``."""
    from vqmae.presets import preset_names as names

    return names("mae")


def mae_preset(name: str = "paper", **overrides: Any) -> MAEConfig:
    """A named config of ``vqmae/presets/mae.yaml``: ``paper`` (published depths 6/12/16/20),
    ``base``, ``demo`` or ``tiny``.

    Keyword overrides replace any field, e.g. ``mae_preset("paper", depth=12, fusion="caf")``.
    """
    from vqmae.presets import preset_values

    if name not in preset_names():
        raise MAEConfigError(f"unknown MAE preset '{name}' (known: {', '.join(preset_names())})")
    data = {**preset_values("mae", name), **overrides}
    return config_from_dict(MAEConfig, data)


# --------------------------------------------------------------------- from a token store

def _closest_divisor(n: int, target: float) -> int:
    return min(divisors(n), key=lambda d: (abs(math.log(d / max(target, 1e-9))), -d))


def fit_patch(full: tuple[int, ...], patch: tuple[int, ...]) -> tuple[int, ...]:
    """``patch`` with every size that does not divide its axis of ``full = (T, *S)`` replaced by
    the divisor of that axis closest to it (in ratio)."""
    return tuple(p if n % p == 0 else _closest_divisor(n, p) for n, p in zip(full, patch))


def cfg_for_store(provenance: dict[str, dict[str, Any]], preset: str = "paper",
                  window_seconds: float = WINDOW_SECONDS, modalities: tuple[str, ...] | None = None,
                  auto_patches: bool | None = None, **overrides: Any) -> MAEConfig:
    """A :class:`MAEConfig` matching a token store.

    ``provenance`` is ``TokenStore.provenance`` (or a TokenStore): per modality
    ``token_shape``, ``codebook_size``, ``frames_per_second``. Frames per window are
    ``round(window_seconds × frames_per_second)``. Patch sizes come from the preset (or
    ``overrides``); ``auto_patches`` (default: on for every preset except ``paper``) replaces
    each preset patch size that does not divide its axis by the nearest divisor. With
    ``auto_patches=False`` a misfit raises :class:`MAEConfigError` naming the sizes.
    Per-index embedding sizes stay the preset's (paper: 4 visual, 8 audio); a linear
    projection bridges ``indices × embed_dim != width``.
    """
    prov = getattr(provenance, "provenance", provenance)
    if modalities is None:
        modalities = tuple(m for m in MODALITIES if m in prov)
    modalities = tuple(modalities)
    missing = [m for m in modalities if m not in prov]
    if missing:
        raise MAEConfigError(f"the token store has no {', '.join(missing)} tokens (it has {', '.join(prov)})")
    base = mae_preset(preset)
    if auto_patches is None:
        auto_patches = preset != "paper"
    data: dict[str, Any] = {**config_to_dict(base), "modalities": list(modalities)}
    for m in modalities:
        p = prov[m]
        shape = tuple(int(x) for x in p["token_shape"])
        fps = float(p["frames_per_second"])
        frames = int(round(window_seconds * fps))
        data[f"{m}_token_shape"] = list(shape)
        data[f"{m}_codebook_size"] = int(p["codebook_size"])
        data[f"{m}_frames"] = frames
        data[f"{m}_fps"] = fps
        patch = tuple(overrides.get(f"{m}_patch", getattr(base, f"{m}_patch")))
        full = (frames, *shape)
        if auto_patches and f"{m}_patch" not in overrides:
            if len(patch) != len(full):  # a token grid of another rank: 4 per token axis
                patch = (patch[0], *(4,) * len(shape))
            patch = fit_patch(full, patch)
        data[f"{m}_patch"] = list(patch)
    data.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()})
    return config_from_dict(MAEConfig, data)
