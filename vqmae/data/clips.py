"""Aligned audiovisual clips: the input of both tokenizers.

:func:`load_aligned_clip` decodes one file into ``T`` face crops at ``fps`` and exactly
``T * sample_rate / fps`` audio samples covering the same time span (paper: 16 kHz, 25 fps,
640 samples per video frame, so audio STFT frame ``2c`` (hop 320) lines up with video frame ``c``).

Alignment: time 0 is the first video frame. The audio track is shifted by its start offset in
the container (``audio_start - video_start``, zero-padded or trimmed), then cut or zero-padded to
``T * samples_per_frame``, where ``T = min(video frames, round(audio samples / samples_per_frame))``.
Audio is peak-normalised per file (max |x| = 1) unless the file is silent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vqmae.data.faces import DetectorConfig, centre_crop, crop_track, face_track
from vqmae.data.media import MediaError, MediaInfo, load_audio, load_video, probe

SILENCE_PEAK = 1e-4
"""Peak amplitude (−80 dBFS) under which a file counts as silent and is not normalised."""


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
        spf = self.sample_rate / self.fps
        if abs(spf - round(spf)) > 1e-9:
            raise ValueError(f"sample_rate / fps must be an integer (got {self.sample_rate} / {self.fps})")
        return int(round(spf))


@dataclass
class AlignedClip:
    """``audio`` float32 ``(T * sample_rate / fps,)``; ``faces`` uint8 ``(T, face_size, face_size, 3)``."""

    audio: np.ndarray
    faces: np.ndarray
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


def clip_config_for_dataset(manifest_path: str | Path, **overrides: Any) -> ClipConfig:
    """The :class:`ClipConfig` that ``vqmae prepare`` used for a dataset (its ``dataset.json``
    ``"media"`` section: detect_faces, face cache, sizes), with ``overrides`` applied."""
    from vqmae.data.manifest import DATASET_INFO_NAME
    from vqmae.io import read_json

    p = Path(manifest_path)
    folder = p if p.is_dir() else p.parent
    info_path = folder / DATASET_INFO_NAME
    media = dict(read_json(info_path).get("media", {})) if info_path.is_file() else {}
    cache = media.get("face_cache_dir", "")
    if cache and not Path(cache).is_absolute():
        media["face_cache_dir"] = str(folder / cache)
    kwargs = {k: v for k, v in media.items() if k in ClipConfig.__dataclass_fields__}
    kwargs.update(overrides)
    return ClipConfig(**kwargs)


def clip_config_dict(cfg: ClipConfig) -> dict[str, Any]:
    """JSON-able form (for dataset.json ``"media"``)."""
    return asdict(cfg)
