"""From clips to tokens: tokenizer folders, the clip source of the loader workers, clip encoding.

    toks = load_tokenizer_folders({"audio": "out/audio_tok", "visual": "out/visual_tok"})
    src = ClipSource([(0, "a.mp4")], clip_config_dict(cfg) | {"modalities": ["audio", "visual"]},
                     preparers=toks)
    codes = encode_clip(toks, src[0]["x"], torch.device("cpu"))   # {m: uint16 (T_m, *S_m)}

Every clip goes through :func:`vqmae.data.clips.load_clip` (the clip path of every stage) and
its checks (``truncated``, ``too_short``, ``silent``), or through a custom ``module:function``
loader whose output gets the same checks.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vqmae.config import ConfigError
from vqmae.data.clips import MODALITIES, check_clip, clip_config_from_dict, load_clip


def check_device(device: str, key: str = "device") -> None:
    """``auto | cpu | cuda | cuda:N`` (ConfigError naming ``key`` otherwise, e.g. ``device=tpu``)."""
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise ConfigError(f"{key}: must be auto, cpu, cuda or cuda:N, got {device!r}")


def import_function(spec: str) -> Callable[..., Any]:
    """``'module:function'`` -> the function (ConfigError naming ``loader`` when it fails)."""
    mod, _, fn = spec.partition(":")
    if not fn:
        raise ConfigError(f"loader '{spec}': expected 'module:function'")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"loader '{spec}': {e}") from None


def load_tokenizer_folders(dirs: Mapping[str, str], fingerprints: Mapping[str, str | None] | None = None,
                           what: str = "the model was trained with") -> dict[str, Any]:
    """``{modality: folder}`` -> ``{modality: tokenizer}`` in eval mode.

    Each folder must hold a tokenizer of its modality: folders swapped between
    ``--audio-tokenizer`` and ``--visual-tokenizer`` give one ConfigError naming both. With
    ``fingerprints``, a tokenizer whose fingerprint differs from the recorded one is refused
    (``what`` says what it was recorded for, e.g. "the model was trained with").
    """
    from vqmae.hub import is_hub_id
    from vqmae.tokenizers import load_tokenizer

    toks = {}
    for m, folder in dirs.items():
        if not Path(folder).exists() and not is_hub_id(folder):  # a hub id org/name loads through the cache
            raise ConfigError(f"{m}_tokenizer: folder not found: {folder}")
        try:
            tok = load_tokenizer(folder)
        except ValueError as e:  # ModelFolderError: not a tokenizer, unknown version, pickles
            raise ConfigError(f"{m}_tokenizer: {e}") from None
        if getattr(tok, "modality", m) != m:
            other = tok.modality
            given = dirs.get(other)
            swapped = (f"; --{other}-tokenizer {given} was given for the {other} one: swapped?"
                       if given else "")
            raise ConfigError(f"{m}_tokenizer: --{m}-tokenizer {folder} holds a {other} tokenizer, "
                              f"not a {m} one{swapped}")
        want = (fingerprints or {}).get(m)
        if want and tok.fingerprint() != want:
            raise ConfigError(f"{m}_tokenizer: {folder}: {m} tokenizer {tok.fingerprint()[:16]}… is not the one "
                              f"{what} ({want[:16]}…)")
        toks[m] = tok.eval()
    return toks


def error_reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def prepare_clip(clip: Any, preparers: Mapping[str, Any],
                 device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """A loaded clip -> ``{modality: tokenizer.prepare(media)}`` (audio (T_a, F) power frames,
    visual (T, 3, s, s) floats for the VQ-VAEs). Raises ValueError for a missing modality or a
    clip too short for one token frame. ``device``: where the preparers run (default CPU)."""
    x = {}
    with torch.inference_mode():
        for m, tok in preparers.items():
            media = clip.audio if m == "audio" else clip.faces
            if media is None or len(media) == 0:
                raise ValueError(f"no {m} in the clip")
            t = torch.from_numpy(np.ascontiguousarray(media))
            x[m] = tok.prepare(t if device is None else t.to(device))
            if x[m].shape[0] == 0:
                raise ValueError(f"too short: 0 {m} token frames")
    return x


class ClipSource(Dataset):
    """Decodes, checks, crops and prepares clips in DataLoader workers; a failure becomes an
    error item (kind as ``prepare`` reports it: ``truncated``, ``too_short``, ``silent``, ...).

    Item: {"idx", "path", "t_load", "t_prepare", "x": {modality: prepared input (T, ...)}}
    or {"idx", "path", "t_load", "t_prepare", "error": str, "kind": str}.
    ``clip_config``: :func:`~vqmae.data.clips.clip_config_dict` plus ``"modalities"``.
    """

    def __init__(self, items: list[tuple[int, str]], clip_config: dict[str, Any],
                 preparers: dict[str, Any], loader: str = ""):
        self.items, self.clip_config, self.preparers, self.loader = items, clip_config, preparers, loader
        self._fn: Callable[..., Any] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, path: str) -> Any:
        if self.loader:
            if self._fn is None:
                self._fn = import_function(self.loader)
            clip = self._fn(path, self.clip_config)
            check_clip(clip)
            return clip
        modalities = tuple(self.clip_config.get("modalities") or MODALITIES)
        return load_clip(path, clip_config_from_dict(self.clip_config), modalities)

    def __getitem__(self, j: int) -> dict[str, Any]:
        idx, path = self.items[j]
        out: dict[str, Any] = {"idx": idx, "path": path, "t_prepare": 0.0}
        t0 = time.perf_counter()
        try:
            clip = self._load(path)
            out["t_load"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            out["x"] = prepare_clip(clip, self.preparers)
        except Exception as e:  # noqa: BLE001 - any per-clip failure goes to errors.jsonl
            out.update(error=error_reason(e), kind=getattr(e, "kind", type(e).__name__))
            out.setdefault("t_load", time.perf_counter() - t0)
            return out
        out["t_prepare"] = time.perf_counter() - t0
        return out


def encode_clip(toks: Mapping[str, Any], x: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, np.ndarray]:
    """Prepared inputs of one clip -> uint16 tokens per modality (T, *token_shape).

    One clip per call: a tokenizer may look at neighbouring frames (the audio ``base`` preset
    does), so clips are never concatenated.
    """
    out = {}
    with torch.inference_mode():
        for m, tok in toks.items():
            codes = tok.encode(x[m].to(device, non_blocking=True)).to(torch.int32).cpu().numpy()
            K = tok.codebook_size
            if codes.size and (codes.min() < 0 or codes.max() >= K):
                raise ValueError(f"{m} tokenizer returned codes outside [0, {K})")
            out[m] = codes.astype(np.uint16)
    return out
