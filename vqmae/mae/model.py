"""VQ-MAE-AV: a masked autoencoder on discrete audio and visual tokens.

Figure of the paper, as methods::

    tokens --patchify--> (B, N_m, P_m) --embed visible--> encoder (SAF | CAF) --> decoder
        (shared mask token, unshuffle, decoder pos + modality embeddings, blocks)
        --> masked tokens only --> per-index Linear(e -> codebook) --> cross-entropy

``VQMAEAV`` (registered ``"vqmae-av"``) holds ``.encoder`` (:class:`VQMAEEncoder`, state-dict
keys ``encoder.*``), ``.decoder`` and, with ``config.contrastive``, ``.pool`` (attention pooling
for NT-Xent). The same code gives unimodal models (``modalities=("audio",)`` ≈ VQ-MAE-S).
"""

from __future__ import annotations

import math

import torch
from timm.layers import trunc_normal_
from torch import nn

from vqmae.checkpoint import PretrainedModel, register_model
from vqmae.mae.config import MAEConfig, ModalitySpec
from vqmae.mae.embedding import (
    AttentionPool,
    CodeEmbedding,
    CodeHead,
    CrossBlock,
    init_weights,
    make_blocks,
    sincos_pos_embed,
)
from vqmae.mae.losses import masked_code_ce
from vqmae.mae.masking import Mask
from vqmae.mae.patching import patchify, unpatchify


def _gather_rows(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``x (B, N, C)``, ``ids (B, K)`` -> ``(B, K, C)``."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def check_tokens(spec: ModalitySpec, tokens: torch.Tensor) -> None:
    want = (spec.frames, *spec.token_shape)
    if tuple(tokens.shape[1:]) != want:
        raise ValueError(
            f"{spec.name} tokens of shape {tuple(tokens.shape)}: this model expects (B, {', '.join(map(str, want))}) "
            f"({spec.frames} frames = {spec.frames / spec.fps:g} s at {spec.fps:g} frames/s)"
        )


class _Fusion(nn.Module):
    """Transformer blocks over per-modality token sets: SAF (one joint sequence) or CAF."""

    def __init__(self, cfg: MAEConfig, fusion: str, depth: int, heads: int, final_norm: bool):
        super().__init__()
        self.fusion = fusion
        if fusion == "saf":
            self.blocks = make_blocks(cfg, depth, heads)
            self.norm = nn.LayerNorm(cfg.width) if final_norm else None
        else:
            self.cross = nn.ModuleDict({m: CrossBlock(cfg.width, heads, cfg.mlp_ratio, cfg.qkv_bias)
                                        for m in cfg.modalities})
            self.modality_blocks = nn.ModuleDict({m: make_blocks(cfg, depth, heads) for m in cfg.modalities})
            self.norms = nn.ModuleDict({m: nn.LayerNorm(cfg.width) for m in cfg.modalities}) if final_norm else None

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = list(x)
        if self.fusion == "saf":
            sizes = [x[m].shape[1] for m in names]
            h = torch.cat([x[m] for m in names], 1) if len(names) > 1 else x[names[0]]
            for blk in self.blocks:
                h = blk(h)
            if self.norm is not None:
                h = self.norm(h)
            return dict(zip(names, h.split(sizes, 1)))
        ctx = torch.cat([x[m] for m in names], 1) if len(names) > 1 else x[names[0]]
        out = {}
        for m in names:
            h = self.cross[m](x[m], ctx)
            for blk in self.modality_blocks[m]:
                h = blk(h)
            out[m] = self.norms[m](h) if self.norms is not None else h
        return out


def _init_positions(pos_embed: nn.ParameterDict, modality_embed: nn.ParameterDict,
                    specs: dict, how: str) -> None:
    """Positional tables ``(1, N_m, W)``: truncated normal (std 0.02) or the sine-cosine codes of
    the patch grid (values in [-1, 1], as in MAE); modality embeddings always truncated normal."""
    for p in modality_embed.values():
        trunc_normal_(p, std=0.02)
    for m, p in pos_embed.items():
        if how == "sincos":
            with torch.no_grad():
                p.copy_(sincos_pos_embed(specs[m].grid, p.shape[-1])[None])
        else:
            trunc_normal_(p, std=0.02)


class VQMAEEncoder(nn.Module):
    """Code embeddings + positional/modality embeddings + transformer + final LayerNorm.

    ``forward(audio=(B, Ta, *ash) | None, visual=(B, Tv, *vsh) | None)`` ->
    ``{"audio": (B, Na, width), "visual": (B, Nv, width)}`` with no masking; a missing
    modality is left out.
    """

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.config = config
        self.specs = config.specs
        w = config.width
        self.embed = nn.ModuleDict({m: CodeEmbedding(s, w) for m, s in self.specs.items()})
        self.pos_embed = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, s.num_patches, w))
                                           for m, s in self.specs.items()})
        self.modality_embed = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, w)) for m in self.specs})
        self.fusion = _Fusion(config, config.fusion, config.depth, config.heads, final_norm=True)
        init_weights(self)
        _init_positions(self.pos_embed, self.modality_embed, self.specs, config.pos_init)

    @property
    def width(self) -> int:
        return self.config.width

    def patchify(self, modality: str, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, T, *S)`` codes -> ``(B, N, P)`` patches (checks the shape)."""
        spec = self.specs[modality]
        check_tokens(spec, tokens)
        return patchify(tokens, spec.patch)

    def embed_patches(self, modality: str, patches: torch.Tensor, ids: torch.Tensor | None = None,
                      reference: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, N, P)`` code patches (only rows ``ids (B, K)`` when given) -> ``(B, K, width)``
        with positional and modality embeddings added; ``reference (B, N, P, e)`` (see
        :meth:`reference_patches`) is subtracted from the code embeddings."""
        pos = self.pos_embed[modality]
        if ids is not None:
            patches = _gather_rows(patches, ids)
            pos = pos[0][ids]
            if reference is not None:
                reference = torch.gather(reference, 1, ids[:, :, None, None].expand(
                    -1, -1, *reference.shape[2:]))
        return self.embed[modality](patches, reference) + pos + self.modality_embed[modality]

    def expected_embeddings(self, modality: str, frequencies: torch.Tensor) -> torch.Tensor:
        """A speaker's code frequencies ``(B, prod token_shape, K)`` -> the expected code embedding
        at every token position ``(B, prod token_shape, e)``."""
        spec, codes = self.specs[modality], self.embed[modality].codes.weight
        K = codes.shape[0]
        if frequencies.shape[1:] != (math.prod(spec.token_shape), K):
            raise ValueError(f"{modality} reference of shape {tuple(frequencies.shape[1:])}; this encoder "
                             f"needs ({math.prod(spec.token_shape)}, {K}) (positions x codes)")
        return frequencies.to(codes.dtype) @ codes

    def reference_patches(self, modality: str, frequencies: torch.Tensor, frames: int) -> torch.Tensor:
        """A speaker's code frequencies ``(B, prod token_shape, K)`` -> the expected code embedding
        at every index of every patch of a ``frames``-long window, ``(B, N, P, e)``."""
        spec = self.specs[modality]
        e = self.embed[modality].codes.weight.shape[1]
        grid = self.expected_embeddings(modality, frequencies).unflatten(1, spec.token_shape).unsqueeze(1)
        grid = grid.expand(-1, frames, *grid.shape[2:])
        return patchify(grid, (*spec.patch, e)).unflatten(-1, (spec.indices, e))

    def forward_tokens(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Embedded tokens per modality ``(B, n_m, width)`` -> encoded ``(B, n_m, width)``."""
        return self.fusion(x)

    def forward(self, audio: torch.Tensor | None = None, visual: torch.Tensor | None = None,
                audio_ref: torch.Tensor | None = None, visual_ref: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """``{m}_ref``: the speaker's code frequencies ``(B, prod token_shape, K)``
        (:mod:`vqmae.data.speaker_reference`); given, the code embeddings are centred on them."""
        given = {"audio": audio, "visual": visual}
        refs = {"audio": audio_ref, "visual": visual_ref}
        for m, t in given.items():
            if t is not None and m not in self.specs:
                raise ValueError(f"this encoder has no {m} input (modalities: {', '.join(self.specs)})")
        x = {}
        for m, t in given.items():
            if t is None:
                continue
            ref = refs[m]
            x[m] = self.embed_patches(m, self.patchify(m, t), reference=None if ref is None
                                      else self.reference_patches(m, ref, t.shape[1]))
        if not x:
            raise ValueError("VQMAEEncoder.forward needs audio and/or visual tokens")
        return self.forward_tokens(x)

    def no_weight_decay(self) -> set[str]:
        return {f"pos_embed.{m}" for m in self.specs} | {f"modality_embed.{m}" for m in self.specs}


class VQMAEDecoder(nn.Module):
    """Shared zero-initialised mask token, decoder embeddings, blocks (no final norm), heads."""

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.specs = config.specs
        w = config.width
        self.mask_token = nn.Parameter(torch.zeros(1, 1, w))
        self.pos_embed = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, s.num_patches, w))
                                           for m, s in self.specs.items()})
        self.modality_embed = nn.ParameterDict({m: nn.Parameter(torch.zeros(1, 1, w)) for m in self.specs})
        self.fusion = _Fusion(config, config.decoder_fusion, config.decoder_depth, config.decoder_heads,
                              final_norm=False)
        self.heads = nn.ModuleDict({m: CodeHead(s, w) for m, s in self.specs.items()})
        init_weights(self)
        _init_positions(self.pos_embed, self.modality_embed, self.specs, config.pos_init)

    def forward(self, encoded: dict[str, torch.Tensor], masks: dict[str, Mask]) -> dict[str, torch.Tensor]:
        """``encoded[m] (B, K_m, W)`` visible tokens -> ``(B, N_m, W)`` for every patch."""
        x = {}
        for m, z in encoded.items():
            mask = masks[m]
            b, k, w = z.shape
            full = torch.cat([z, self.mask_token.to(z.dtype).expand(b, mask.num_masked, w)], 1)
            full = _gather_rows(full, mask.ids_restore)
            x[m] = full + self.pos_embed[m] + self.modality_embed[m]
        return self.fusion(x)


@register_model("vqmae-av")
class VQMAEAV(PretrainedModel):
    """VQ-MAE-AV (``config.modalities`` both) or a unimodal VQ-MAE from the same code."""

    config_class = MAEConfig

    def __init__(self, config: MAEConfig):
        super().__init__(config)
        self.encoder = VQMAEEncoder(config)
        self.decoder = VQMAEDecoder(config)
        self.pool = (nn.ModuleDict({m: AttentionPool(config.width, config.heads) for m in config.modalities})
                     if config.contrastive else None)
        if self.pool is not None:
            init_weights(self.pool)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.config.modalities

    @property
    def specs(self) -> dict[str, ModalitySpec]:
        return self.encoder.specs

    def mask_grids(self) -> dict[str, tuple[int, ...]]:
        """Patch grid ``(T, *S)`` of each modality (for :func:`vqmae.mae.masking.make_masks`)."""
        return {m: s.grid for m, s in self.specs.items()}

    def no_weight_decay(self) -> set[str]:
        names = {"decoder.mask_token"}
        for m in self.modalities:
            names |= {f"encoder.pos_embed.{m}", f"encoder.modality_embed.{m}",
                      f"decoder.pos_embed.{m}", f"decoder.modality_embed.{m}"}
        return names

    # ------------------------------------------------------------------------ figure
    def forward_encoder(self, patches: dict[str, torch.Tensor], masks: dict[str, Mask]
                        ) -> dict[str, torch.Tensor]:
        """Embed the visible patches and encode them: ``(B, K_m, W)`` per modality."""
        x = {m: self.encoder.embed_patches(m, p, masks[m].ids_keep) for m, p in patches.items()}
        return self.encoder.forward_tokens(x)

    def forward_decoder(self, encoded: dict[str, torch.Tensor], masks: dict[str, Mask]
                        ) -> dict[str, torch.Tensor]:
        """Decoder outputs ``(B, N_m, W)`` for every patch."""
        return self.decoder(encoded, masks)

    def forward(self, tokens: dict[str, torch.Tensor], masks: dict[str, Mask],
                fused_ce: bool | None = None) -> dict[str, torch.Tensor]:
        """Masked pretraining step.

        ``tokens[m]`` ``(B, T_m, *S_m)`` int64 codes; ``masks[m]`` from
        :func:`~vqmae.mae.masking.make_masks`. Returns per modality ``loss_sum_<m>`` (summed
        cross-entropy over the code indices of masked patches), ``correct_<m>``, ``count_<m>``,
        and with ``config.contrastive`` ``pooled_<m>`` ``(B, W)`` (attention-pooled encoder
        output). Logits are computed for masked indices only.
        """
        patches = {m: self.encoder.patchify(m, tokens[m]) for m in self.modalities}
        encoded = self.forward_encoder(patches, masks)
        decoded = self.forward_decoder(encoded, masks)
        out: dict[str, torch.Tensor] = {}
        for m in self.modalities:
            head = self.decoder.heads[m]
            ids = masks[m].ids_masked
            h = head.split(_gather_rows(decoded[m], ids))          # (B, M, P, e)
            target = _gather_rows(patches[m], ids)                 # (B, M, P)
            loss_sum, correct = masked_code_ce(h.reshape(-1, h.shape[-1]), head.out.weight, head.out.bias,
                                               target.reshape(-1), fused=fused_ce)
            out[f"loss_sum_{m}"] = loss_sum
            out[f"correct_{m}"] = correct
            out[f"count_{m}"] = torch.tensor(target.numel(), device=loss_sum.device)
            if self.pool is not None:
                out[f"pooled_{m}"] = self.pool[m](encoded[m])
        return out

    @torch.no_grad()
    def predict(self, tokens: dict[str, torch.Tensor], masks: dict[str, Mask]
                ) -> dict[str, torch.Tensor]:
        """Tokens with every masked patch replaced by the argmax prediction: ``(B, T_m, *S_m)``."""
        patches = {m: self.encoder.patchify(m, tokens[m]) for m in self.modalities}
        decoded = self.forward_decoder(self.forward_encoder(patches, masks), masks)
        out = {}
        for m in self.modalities:
            spec, mask = self.specs[m], masks[m]
            pred = self.decoder.heads[m].logits(_gather_rows(decoded[m], mask.ids_masked)).argmax(-1)
            filled = patches[m].clone()
            filled.scatter_(1, mask.ids_masked.unsqueeze(-1).expand(-1, -1, spec.indices), pred.to(filled.dtype))
            out[m] = unpatchify(filled, spec.patch, spec.grid)
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
