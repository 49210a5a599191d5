"""Noise robustness: additive white or babble noise at a given SNR, added to the audio of test clips,
re-tokenized through the store's audio tokenizer, evaluated with the clean visual tokens.

Recipe (per clip, seeded by (seed, clip, noise type, SNR)):

* the clean waveform is decoded exactly as ``vqmae tokenize`` did (``vqmae.data.clips.load_clip``
  with the store's ``clip_config``, aligned to the clip's video frames, peak-normalised);
* white noise: Gaussian; babble: the sum of ``talkers`` clean utterances of *other* speakers
  (random clips of the store, random offsets, looped to length);
* the noise is scaled so that ``10 log10(P_signal / P_noise) = SNR`` over the clip, added, and the
  mixture peak-normalised again (as a noisy recording would be on loading);
* the audio tokenizer (folder and fingerprint from the store provenance) encodes the mixture;
  the resulting tokens replace the clip's audio tokens in an in-memory overlay of the store
  (:class:`~vqmae.data.memory_store.MemoryTokenStore`), so windows are cut exactly as for the
  clean test.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqmae.data.clips import SILENCE_PEAK, load_clip, resolve_clip_config
from vqmae.data.memory_store import MemoryTokenStore
from vqmae.data.token_store import StoreError, TokenStore
from vqmae.runs import log

NOISE_TYPES = ("white", "babble")


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean + g · noise`` with ``g`` such that the mixture has the SNR ``snr_db`` (dB)."""
    ps = float(np.mean(clean.astype(np.float64) ** 2))
    pn = float(np.mean(noise.astype(np.float64) ** 2))
    if pn <= 0 or ps <= 0:
        return clean.astype(np.float32)
    gain = np.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return (clean + gain * noise).astype(np.float32)


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n).astype(np.float32)


def babble_noise(n: int, sources: Sequence[np.ndarray], rng: np.random.Generator, talkers: int = 6) -> np.ndarray:
    """Sum of ``talkers`` utterances (random sources, random start, looped to ``n`` samples), each
    normalised to unit power first."""
    if not sources:
        raise ValueError("babble noise needs utterances of other speakers")
    out = np.zeros(n, dtype=np.float64)
    picks = rng.choice(len(sources), size=talkers, replace=len(sources) < talkers)
    for k in picks:
        s = np.asarray(sources[k], dtype=np.float64)
        if s.size == 0:
            continue
        s = s / max(np.sqrt(np.mean(s ** 2)), 1e-8)
        start = int(rng.integers(0, s.size))
        idx = (start + np.arange(n)) % s.size
        out += s[idx]
    return out.astype(np.float32)


def peak_normalize(x: np.ndarray) -> np.ndarray:
    """Peak-normalise as the clip path does (silent audio, peak <= SILENCE_PEAK, is left as is)."""
    peak = float(np.abs(x).max()) if x.size else 0.0
    return (x / peak).astype(np.float32) if peak > SILENCE_PEAK else x.astype(np.float32)


def _seed(*parts: Any) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def default_audio_loader(store: TokenStore, sample_rate: int | None = None) -> Callable[[int], np.ndarray]:
    """Clip index → the clean waveform the store's audio tokens were made from (float32 ``(S,)``;
    at ``sample_rate`` if given, else the store's). The media file is the clip's manifest row under
    the dataset root its ``dataset.json`` records; a file not there (a moved corpus) is a
    :class:`StoreError` naming it."""
    from vqmae.data.manifest import read_manifest

    manifest = store.meta.get("manifest", "")
    if not manifest or not Path(manifest).exists():
        raise StoreError(f"{store.root}: the media files are needed, but the store's manifest "
                         f"'{manifest}' is not found")
    m = read_manifest(manifest)
    by_id = m.by_id()
    # faces are not needed: the audio-only path gives the samples of the full path
    clip_cfg = resolve_clip_config(store.meta.get("clip_config", {}), detect_faces=False, sample_rate=sample_rate)

    def load(i: int) -> np.ndarray:
        c = store.clips[i]
        rec = by_id.get(c.id)
        path = m.media_path(rec) if rec is not None else Path(m.root) / c.path
        if not path.is_file():
            raise StoreError(f"{path}: media file of clip '{c.id}' not found (dataset root {m.root}, from "
                             f"{Path(manifest).parent / 'dataset.json'}; was the corpus moved?)")
        clip = load_clip(str(path), clip_cfg, modalities=("audio",), check=False)
        return np.asarray(clip.audio, dtype=np.float32)

    return load


def load_audio_tokenizer(store: TokenStore):
    """The audio tokenizer recorded in the store provenance (fingerprint checked)."""
    from vqmae.tokenizers import load_tokenizer

    prov = store.provenance.get("audio")
    if prov is None:
        raise StoreError(f"{store.root}: holds no audio tokens; noise robustness needs them")
    folder = prov.get("tokenizer_dir", "")
    if not folder or not Path(folder).exists():
        raise StoreError(f"{store.root}: the audio tokenizer folder '{folder}' recorded in the store is not found")
    tok = load_tokenizer(folder).eval()
    store.check_tokenizer("audio", tok.fingerprint())
    return tok


class NoisyAudio:
    """Noisy waveforms per (noise type, SNR, clip), seeded by (seed, clip id, type, SNR); the clean
    waveforms (``audio_loader``, default :func:`default_audio_loader`) are cached."""

    def __init__(self, store: TokenStore, audio_loader: Callable[[int], np.ndarray] | None = None,
                 seed: int = 0, talkers: int = 6):
        self.store = store
        self.load = audio_loader or default_audio_loader(store)
        self.seed, self.talkers = seed, talkers
        self._clean: dict[int, np.ndarray] = {}

    def clean(self, i: int) -> np.ndarray:
        if i not in self._clean:
            self._clean[i] = self.load(i)
        return self._clean[i]

    def _babble_sources(self, i: int, rng: np.random.Generator, pool: Sequence[int]) -> list[np.ndarray]:
        spk = self.store.speakers[i]
        others = [j for j in pool if self.store.speakers[j] != spk]
        if not others:  # the pool holds one speaker only: take the other speakers of the store
            others = [j for j in range(len(self.store)) if self.store.speakers[j] != spk]
        picks = rng.choice(others, size=min(len(others), self.talkers), replace=False) if others else []
        return [self.clean(int(j)) for j in picks]

    def noisy(self, kind: str, snr_db: float, i: int, pool: Sequence[int]) -> np.ndarray:
        """float32 ``(S,)``: clip ``i`` with ``kind`` noise at ``snr_db``, peak-normalised again;
        babble from clips of ``pool`` spoken by other speakers."""
        if kind not in NOISE_TYPES:
            raise ValueError(f"unknown noise '{kind}' (choose from {', '.join(NOISE_TYPES)})")
        clean = self.clean(i)
        rng = np.random.default_rng(_seed(self.seed, self.store.ids[i], kind, snr_db))
        if kind == "white":
            noise = white_noise(clean.size, rng)
        else:
            noise = babble_noise(clean.size, self._babble_sources(i, rng, pool), rng, self.talkers)
        return peak_normalize(mix_at_snr(clean, noise, snr_db))


class NoisyAudioTokens(NoisyAudio):
    """Noisy re-tokenized audio tokens per (noise type, SNR), computed once per clip and cached."""

    def __init__(self, store: TokenStore, tokenizer: Any = None,
                 audio_loader: Callable[[int], np.ndarray] | None = None, seed: int = 0, talkers: int = 6):
        self.tokenizer = tokenizer if tokenizer is not None else load_audio_tokenizer(store)
        super().__init__(store, audio_loader, seed, talkers)
        self._tokens: dict[tuple[str, float], dict[int, np.ndarray]] = {}
        self.agreement: dict[str, float] = {}

    def _encode(self, wave: np.ndarray, frames: int) -> np.ndarray:
        tok = self.tokenizer
        with torch.inference_mode():
            codes = tok.encode(tok.prepare(torch.from_numpy(wave))).cpu().numpy()
        if codes.shape[0] < frames:  # a frame short (rounding): repeat the last one
            codes = np.concatenate([codes, np.repeat(codes[-1:], frames - codes.shape[0], 0)])
        return codes[:frames].astype(np.uint16)

    def tokens(self, kind: str, snr_db: float, clips: Sequence[int], pool: Sequence[int] | None = None
               ) -> dict[int, np.ndarray]:
        """``{clip index: audio tokens (T_a, *token_shape)}`` of the noisy clips; babble from ``pool``
        (default: every clip of the store). Cached per (type, SNR, clip): the same clip gets the
        same noise whichever call asks first, as long as ``pool`` is the same."""
        if kind not in NOISE_TYPES:
            raise ValueError(f"unknown noise '{kind}' (choose from {', '.join(NOISE_TYPES)})")
        cache = self._tokens.setdefault((kind, float(snr_db)), {})
        pool = list(pool if pool is not None else range(len(self.store)))
        for i in clips:
            if i not in cache:
                cache[i] = self._encode(self.noisy(kind, snr_db, i, pool), int(self.store.frames("audio")[i]))
        return {i: cache[i] for i in clips}

    def check_clean(self, clips: Sequence[int]) -> float:
        """Fraction of audio tokens that re-tokenizing the clean audio reproduces (should be ~1:
        shows that the decoding path matches the store's)."""
        same = total = 0
        for i in clips:
            codes = self._encode(self.clean(i), int(self.store.frames("audio")[i]))
            stored = np.asarray(self.store.read(i, "audio"))
            same += int((codes == stored).sum())
            total += codes.size
        frac = same / max(total, 1)
        self.agreement["clean_retokenized"] = frac
        if frac < 0.95:
            log.warning("re-tokenizing the clean audio reproduces only %.1f %% of the stored tokens: "
                        "the noise results compare against a slightly different clean input", 100 * frac)
        return frac

    def store_for(self, kind: str, snr_db: float, clips: Sequence[int],
                  pool: Sequence[int] | None = None) -> MemoryTokenStore:
        """An overlay of the store over ``clips`` whose audio tokens are the noisy ones. Babble
        comes from clips of ``pool`` (default: ``clips``) spoken by other speakers."""
        tokens = self.tokens(kind, snr_db, clips, pool=list(clips) if pool is None else pool)
        return MemoryTokenStore.overlay(self.store, {"audio": tokens}, clip_ids=list(clips))
