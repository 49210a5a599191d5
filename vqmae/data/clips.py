"""Aligned audiovisual clips: the input of both tokenizers.

:func:`load_aligned_clip` decodes one file into ``T`` face crops at ``fps`` and exactly
``T * sample_rate / fps`` audio samples covering the same time span (paper: 16 kHz, 25 fps,
640 samples per video frame, so audio STFT frame ``2c`` (hop 320) lines up with video frame ``c``).

Alignment: time 0 is the first video frame. The audio track is shifted by its start offset in
the container (``audio_start - video_start``, zero-padded or trimmed), then cut or zero-padded to
``T * samples_per_frame``, where ``T = min(video frames, round(audio samples / samples_per_frame))``.
Audio is peak-normalised per file (max |x| = 1) unless the file is silent.

This module is the one clip path of the package: :func:`resolve_clip_config` is the one place
that decides the clip settings (dataset.json or a recorded ``clip_config``, the tokenizers'
rates, overrides), :func:`load_clip` the one loader (with an audio-only fast path that gives the
same samples without decoding video) and :func:`check_clip` the one set of input checks
(``truncated``, ``too_short``, ``silent``), used by ``prepare``, tokenizer training, ``tokenize``,
``predict``, ``reconstruct`` and the noise evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vqmae.data.faces import DetectorConfig, centre_crop, crop_track, face_track
from vqmae.data.media import MediaError, MediaInfo, load_audio, load_video, probe

SILENCE_PEAK = 1e-4
"""Peak amplitude (−80 dBFS) under which a file counts as silent and is not normalised."""
MIN_CLIP_SECONDS = 0.5
"""Clips shorter than this (seconds of aligned audio + video) are rejected as ``too_short``."""
WINDOW_SECONDS = 2.0
"""Default model window (paper: 2 s = 100 audio + 50 video token frames at 50 / 25 fps)."""
MODALITIES = ("audio", "visual")


@dataclass
class ClipConfig:
    sample_rate: int = 16000
    fps: float = 25.0
    peak_normalize: bool = True
    detect_faces: bool = True
    """False for face-centred sources (VoxCeleb2, synthetic corpus): centre square crop + resize."""
    face_size: int = 96
    face_margin: float = 0.25
    """Crop side = detected face side × (1 + 2 × margin)."""
    face_smooth: int = 5
    """Moving-average window (frames) over face centre and size."""
    backend: str = "auto"
    """Media backend: auto | decord | pyav (vqmae.data.media)."""
    face_cache_dir: str = ""
    """Folder of cached detections (``prepare`` writes ``<out>/face_cache``); empty: no cache."""
    detector: DetectorConfig = field(default_factory=DetectorConfig)

    def __post_init__(self) -> None:
        if isinstance(self.detector, dict):  # from JSON (dataset.json "media", token store plans)
            self.detector = DetectorConfig(**self.detector)

    @property
    def samples_per_frame(self) -> int:
        return samples_per_frame(self.sample_rate, self.fps)


def samples_per_frame(sample_rate: int, fps: float) -> int:
    """Audio samples per video frame; ValueError unless ``sample_rate / fps`` is an integer."""
    spf = sample_rate / fps
    if abs(spf - round(spf)) > 1e-9:
        raise ValueError(f"sample_rate / fps must be an integer (got {sample_rate} / {fps})")
    return int(round(spf))


@dataclass
class AlignedClip:
    """``audio`` float32 ``(T * sample_rate / fps,)``; ``faces`` uint8 ``(T, face_size, face_size, 3)``."""

    audio: np.ndarray
    faces: np.ndarray | None
    """None from the audio-only path (:func:`load_clip` with ``modalities=("audio",)``)."""
    fps: float
    sample_rate: int
    path: str
    face_detected: np.ndarray | None = None
    """``(T,)`` bool: frames with a kept detection (None when detection was skipped)."""
    peak: float = 0.0
    """Peak |amplitude| of the audio before normalisation."""
    info: MediaInfo | None = None

    @property
    def num_frames(self) -> int:
        if self.faces is None:
            return int(round(self.audio.shape[0] * self.fps / self.sample_rate))
        return int(self.faces.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


def align_audio(wave: np.ndarray, num_frames: int, samples_per_frame: int, offset: int = 0) -> np.ndarray:
    """Shift ``wave (S,)`` by ``offset`` samples (positive: audio starts later -> zeros in front),
    then cut / zero-pad to exactly ``num_frames * samples_per_frame``."""
    if offset > 0:
        wave = np.concatenate([np.zeros(offset, dtype=np.float32), wave])
    elif offset < 0:
        wave = wave[-offset:]
    n = num_frames * samples_per_frame
    if wave.shape[0] >= n:
        return np.ascontiguousarray(wave[:n], dtype=np.float32)
    return np.concatenate([wave, np.zeros(n - wave.shape[0], dtype=np.float32)]).astype(np.float32)


def load_aligned_clip(path: str | Path, cfg: ClipConfig | None = None) -> AlignedClip:
    """Decode ``path`` into aligned audio + face crops (see module doc). Raises :class:`MediaError`
    (``no_audio``, ``no_video``, ``no_face``, ``too_short``, ``corrupt``, ...)."""
    cfg = cfg or ClipConfig()
    spf = cfg.samples_per_frame
    info = probe(path)
    if not info.has_video:
        raise MediaError(path, "no video track", kind="no_video")
    if not info.has_audio:
        raise MediaError(path, "no audio track", kind="no_audio")
    frames = load_video(path, fps=cfg.fps, backend=cfg.backend, info=info)
    wave = load_audio(path, sample_rate=cfg.sample_rate, backend=cfg.backend, info=info)
    offset = int(round((info.audio_start - info.video_start) * cfg.sample_rate))
    num_frames = min(frames.shape[0], int(round((wave.shape[0] + offset) / spf)))
    if num_frames < 1:
        raise MediaError(path, "too short: less than one video frame of audio and video", kind="too_short")
    audio = align_audio(wave, num_frames, spf, offset)
    frames = frames[:num_frames]
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if cfg.peak_normalize and peak > SILENCE_PEAK:
        audio = audio / peak
    detected = None
    if cfg.detect_faces:
        track = face_track(frames, path=path, fps=cfg.fps, cfg=cfg.detector,
                           cache_dir=cfg.face_cache_dir, smooth=cfg.face_smooth)
        faces = crop_track(frames, track, size=cfg.face_size, margin=cfg.face_margin)
        detected = track.detected
    else:
        faces = centre_crop(frames, size=cfg.face_size)
    return AlignedClip(audio=audio.astype(np.float32, copy=False), faces=faces, fps=cfg.fps,
                       sample_rate=cfg.sample_rate, path=str(path), face_detected=detected,
                       peak=peak, info=info)


def _normalise(audio: np.ndarray, cfg: ClipConfig) -> tuple[np.ndarray, float]:
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if cfg.peak_normalize and peak > SILENCE_PEAK:
        audio = audio / peak
    return audio.astype(np.float32, copy=False), peak


def load_aligned_audio(path: str | Path, cfg: ClipConfig | None = None) -> AlignedClip:
    """The audio of :func:`load_aligned_clip` without decoding the video (``faces`` None): the
    frame count comes from the header (``T = floor(video duration × fps)``, as ``load_video``
    decodes), then the same shift, cut and peak normalisation. A file without video (wav) keeps
    all of its audio, cut to whole frames."""
    cfg = cfg or ClipConfig()
    spf = cfg.samples_per_frame
    info = probe(path)
    if not info.has_audio:
        raise MediaError(path, "no audio track", kind="no_audio")
    wave = load_audio(path, sample_rate=cfg.sample_rate, backend=cfg.backend, info=info)
    offset = int(round((info.audio_start - info.video_start) * cfg.sample_rate)) if info.has_video else 0
    num_frames = int(round((wave.shape[0] + offset) / spf))
    if info.has_video and info.video_duration > 0:
        num_frames = min(num_frames, int(math.floor(info.video_duration * cfg.fps + 1e-6)))
    if num_frames < 1:
        raise MediaError(path, "too short: less than one video frame of audio", kind="too_short")
    audio, peak = _normalise(align_audio(wave, num_frames, spf, offset), cfg)
    return AlignedClip(audio=audio, faces=None, fps=cfg.fps, sample_rate=cfg.sample_rate,
                       path=str(path), peak=peak, info=info)


def load_clip(path: str | Path, cfg: ClipConfig | None = None,
              modalities: tuple[str, ...] | list[str] = MODALITIES, check: bool = True,
              min_seconds: float = MIN_CLIP_SECONDS) -> AlignedClip:
    """The one clip loader: ``modalities == ("audio",)`` takes the audio-only fast path
    (:func:`load_aligned_audio`, same samples), anything else :func:`load_aligned_clip`. With
    ``check`` the clip must pass :func:`check_clip` (else a :class:`MediaError`)."""
    if tuple(modalities) == ("audio",):
        clip = load_aligned_audio(path, cfg)
    else:
        clip = load_aligned_clip(path, cfg)
    if check:
        check_clip(clip, min_seconds=min_seconds)
    return clip


def check_clip(clip: Any, min_seconds: float = MIN_CLIP_SECONDS) -> None:
    """The input checks of every stage (``prepare`` reports the same kinds). Raises a
    :class:`MediaError` of kind ``too_short`` (header or decoded duration under ``min_seconds``),
    ``truncated`` (decoded < 90 % of the header's duration − 0.2 s) or ``silent`` (audio peak
    <= SILENCE_PEAK). ``clip`` is an :class:`AlignedClip` or any object with ``.audio``
    (custom loaders; then ``.peak``/``.info`` are optional)."""
    path = getattr(clip, "path", "<clip>")
    info = getattr(clip, "info", None)
    header = None
    if info is not None:
        if info.has_video:
            header = min(info.video_duration or info.duration, info.audio_duration or info.duration)
        else:
            header = info.audio_duration or info.duration
        if header < min_seconds:
            raise MediaError(path, f"too short: {header:.2f} s < {min_seconds} s", kind="too_short")
    faces = getattr(clip, "faces", None)
    audio = getattr(clip, "audio", None)
    if faces is not None:
        dur = len(faces) / float(getattr(clip, "fps", 25.0))
    else:
        dur = 0.0 if audio is None else len(audio) / float(getattr(clip, "sample_rate", 16000))
    if header is not None and dur < 0.9 * header - 0.2:
        raise MediaError(path, f"truncated: {dur:.2f} s decode of {header:.2f} s in the header", kind="truncated")
    if dur < min_seconds:
        raise MediaError(path, f"too short: {dur:.2f} s of aligned audio+video < {min_seconds} s",
                         kind="too_short")
    peak = getattr(clip, "peak", None)
    if peak is None:
        peak = float(np.abs(audio).max()) if audio is not None and len(audio) else 0.0
    if audio is not None and peak <= SILENCE_PEAK:
        raise MediaError(path, f"silent audio (peak {peak:.1e} <= {SILENCE_PEAK:.0e})", kind="silent")


# --------------------------------------------------------------------------------- settings


def clip_config_from_dict(d: Mapping[str, Any]) -> ClipConfig:
    """A :class:`ClipConfig` from its JSON form (unknown keys such as ``modalities`` ignored)."""
    return ClipConfig(**{k: v for k, v in d.items() if k in ClipConfig.__dataclass_fields__})


def _dataset_media(manifest_path: str | Path) -> dict[str, Any]:
    from vqmae.data.manifest import DATASET_INFO_NAME
    from vqmae.io import read_json

    p = Path(manifest_path)
    folder = p if p.is_dir() else p.parent
    info_path = folder / DATASET_INFO_NAME
    media = dict(read_json(info_path).get("media", {})) if info_path.is_file() else {}
    cache = media.get("face_cache_dir", "")
    if cache and not Path(cache).is_absolute():
        media["face_cache_dir"] = str(folder / cache)
    return media


def resolve_clip_config(source: str | Path | Mapping[str, Any] | None = None,
                        tokenizers: Mapping[str, Any] | None = None, **overrides: Any) -> ClipConfig:
    """The one place that decides how a clip is decoded.

    ``source``: a manifest path / dataset folder (its dataset.json ``"media"``, as ``prepare``
    recorded it), a recorded ``clip_config`` dict (store.json, a model's info) or None (defaults).
    ``tokenizers`` ``{modality: tokenizer}``: the audio tokenizer's ``sample_rate`` and the
    visual tokenizer's ``frames_per_second`` win over the source. ``overrides`` win over both;
    ``None`` and ``""`` values are ignored (a setting left at "as the dataset").
    """
    if source is None:
        base: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        base = dict(source)
    else:
        base = _dataset_media(source)
    tokenizers = tokenizers or {}
    if "audio" in tokenizers:
        base["sample_rate"] = int(tokenizers["audio"].sample_rate)
    if "visual" in tokenizers:
        base["fps"] = float(tokenizers["visual"].frames_per_second)
    base.update({k: v for k, v in overrides.items() if v is not None and v != ""})
    return clip_config_from_dict(base)


def clip_config_for_dataset(manifest_path: str | Path, **overrides: Any) -> ClipConfig:
    """The :class:`ClipConfig` that ``vqmae prepare`` used for a dataset (its ``dataset.json``
    ``"media"`` section), with ``overrides`` applied (:func:`resolve_clip_config`)."""
    return resolve_clip_config(manifest_path, **overrides)


def clip_config_dict(cfg: ClipConfig) -> dict[str, Any]:
    """JSON-able form (for dataset.json ``"media"``)."""
    return asdict(cfg)
