"""Media decoding: probe, audio and video readers (decord with a PyAV path), resampling.

Conventions (docs/DATA.md, "Decoding and alignment"):

* ``load_video`` returns RGB uint8 frames ``(T, H, W, 3)`` brought to ``fps`` **by timestamps**:
  output frame ``c`` is the source frame on screen at time ``c / fps`` (sample and hold),
  times measured from the first video frame. ``T = floor(video_duration * fps)``.
* ``load_audio`` returns mono float32 ``(S,)`` at ``sample_rate``: channels averaged, resampled
  with ``torchaudio.functional.resample``, sample 0 = the first decoded audio sample.
* ``probe`` reads the container header with PyAV (never decord: decord can crash on garbage)
  and turns every failure into a :class:`MediaError`; it never takes the process down.

Backends: ``"decord"``, ``"pyav"`` or ``"auto"``. ``auto`` decodes video with decord when it is
installed (x86_64 wheels only) and falls back to PyAV; audio uses decord only for mono streams
(with either backend), because decord 0.6.0's ``AudioReader`` scrambles planar multi-channel
audio (e.g. stereo AAC: blocks of one channel land in the other), which PyAV decodes correctly. Both paths give the same frames and samples
(tests/test_media.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("auto", "decord", "pyav")
_TIME_EPS = 1e-3  # seconds: timestamp slack when picking the frame on screen at a target time


class MediaError(ValueError):
    """A media file that cannot be used. The message names the file and the problem.

    ``kind`` is a short machine-readable reason (``missing``, ``unreadable``, ``corrupt``,
    ``truncated``, ``no_audio``, ``no_video``, ``no_face``, ``too_short``, ``silent``,
    ``timeout``, ``crash``, ``name``), used in ``errors.jsonl``.
    """

    def __init__(self, path: str | Path, problem: str, kind: str = "corrupt"):
        self.path = str(path)
        self.problem = problem
        self.kind = kind
        super().__init__(f"{path}: {problem}")


@dataclass
class MediaInfo:
    """What the container header says (no decoding). Times in seconds."""

    path: str
    duration: float = 0.0
    """Longest stream (container duration when streams do not say)."""
    has_video: bool = False
    has_audio: bool = False
    fps: float = 0.0
    num_frames: int = 0
    """Header frame count, or ``round(video_duration * fps)`` when the header has none."""
    width: int = 0
    height: int = 0
    video_duration: float = 0.0
    video_start: float = 0.0
    video_codec: str = ""
    sample_rate: int = 0
    channels: int = 0
    audio_duration: float = 0.0
    audio_start: float = 0.0
    audio_codec: str = ""
    format: str = ""
    size_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------- helpers


def _check_readable(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise MediaError(path, "file not found", kind="missing")
    if not path.is_file():
        raise MediaError(path, "not a regular file", kind="unreadable")
    if not os.access(path, os.R_OK):
        raise MediaError(path, "permission denied (not readable)", kind="unreadable")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)", kind="corrupt")
    return path


_WARNED: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _WARNED:
        _WARNED.add(msg)
        log.warning(msg)


def _have_decord() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:  # ImportError, or a broken native library
        return False
    return True


def _resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown media backend {backend!r} (choose from {list(BACKENDS)})")
    if backend == "decord" and not _have_decord():
        raise ImportError("backend='decord' requested but decord is not installed (x86_64 only); use 'pyav'")
    return backend


def _open_av(path: Path):
    import av

    try:
        return av.open(str(path), metadata_errors="ignore")
    except PermissionError as e:  # OS-level permission problem
        raise MediaError(path, f"permission denied ({e})", kind="unreadable") from None
    except av.error.FFmpegError as e:
        raise MediaError(path, f"not a readable media file ({_ff_msg(e)})", kind="corrupt") from None
    except Exception as e:  # noqa: BLE001 - anything else from the native layer
        raise MediaError(path, f"cannot open ({type(e).__name__}: {e})", kind="corrupt") from None


def _ff_msg(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).split(":")[0].strip() or type(e).__name__


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


# ---------------------------------------------------------------------------------- probe


def probe(path: str | Path) -> MediaInfo:
    """Read stream metadata with PyAV (header only, no decoding).

    Raises :class:`MediaError` (never crashes) for a missing, unreadable or non-media file.
    A file without audio or video is *not* an error here: check ``has_audio`` / ``has_video``.
    """
    path = _check_readable(path)
    container = _open_av(path)
    try:
        info = MediaInfo(path=str(path), format=container.format.name or "",
                         size_bytes=path.stat().st_size)
        cdur = container.duration / 1e6 if container.duration else 0.0
        if container.streams.video:
            vs = container.streams.video[0]
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            info.has_video = True
            info.fps = float(rate) if rate else 0.0
            info.width, info.height = int(vs.codec_context.width), int(vs.codec_context.height)
            info.video_codec = vs.codec_context.name or ""
            info.video_start = _seconds(vs.start_time, vs.time_base) or 0.0
            vdur = _seconds(vs.duration, vs.time_base)
            if not vdur and vs.frames and info.fps:
                vdur = vs.frames / info.fps
            info.video_duration = float(vdur or cdur)
            info.num_frames = int(vs.frames) if vs.frames else int(round(info.video_duration * info.fps))
        if container.streams.audio:
            aus = container.streams.audio[0]
            info.has_audio = True
            info.sample_rate = int(aus.codec_context.sample_rate or aus.rate or 0)
            info.channels = int(aus.codec_context.channels or 0)
            info.audio_codec = aus.codec_context.name or ""
            info.audio_start = _seconds(aus.start_time, aus.time_base) or 0.0
            info.audio_duration = float(_seconds(aus.duration, aus.time_base) or cdur)
        info.duration = max(info.video_duration, info.audio_duration) or cdur
        return info
    except MediaError:
        raise
    except Exception as e:  # noqa: BLE001
        raise MediaError(path, f"cannot read stream headers ({type(e).__name__}: {e})", kind="corrupt") from None
    finally:
        container.close()


# ---------------------------------------------------------------------------------- audio


def resample(wave: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample ``(..., S)`` float audio with ``torchaudio.functional.resample`` (windowed sinc)."""
    if int(orig_rate) == int(new_rate):
        return np.ascontiguousarray(wave, dtype=np.float32)
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), int(orig_rate), int(new_rate))
    return out.numpy().astype(np.float32, copy=False)


def _audio_pyav(path: Path) -> tuple[np.ndarray, int]:
    """All audio of the first audio stream, ``(C, S)`` float32 at the native rate."""
    import av

    container = _open_av(path)
    try:
        if not container.streams.audio:
            raise MediaError(path, "no audio track", kind="no_audio")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate)
        converter = av.AudioResampler(format="fltp")  # float planar, same rate and layout
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                for out in converter.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in converter.resample(None):
                chunks.append(out.to_ndarray())
        except av.error.FFmpegError as e:
            if not chunks:
                raise MediaError(path, f"audio cannot be decoded ({_ff_msg(e)})", kind="corrupt") from None
            raise MediaError(path, f"audio decoding failed after {sum(c.shape[1] for c in chunks)} samples "
                                   f"({_ff_msg(e)}): truncated or corrupt", kind="truncated") from None
        if not chunks:
            raise MediaError(path, "audio track holds no samples", kind="no_audio")
        channels = max(c.shape[0] for c in chunks)
        wave = np.concatenate([c if c.shape[0] == channels else np.repeat(c[:1], channels, 0) for c in chunks], axis=1)
        return wave.astype(np.float32, copy=False), rate
    finally:
        container.close()


def _audio_decord(path: Path) -> tuple[np.ndarray, int]:
    import decord

    try:
        reader = decord.AudioReader(str(path), sample_rate=-1, mono=False)
        wave = reader[:].asnumpy()
        rate = int(round(reader.sample_rate)) if reader.sample_rate > 0 else 0
    except Exception as e:  # noqa: BLE001 - DECORDError / RuntimeError
        raise MediaError(path, f"audio cannot be decoded by decord ({str(e).splitlines()[-1][:200]})", kind="corrupt") from None
    if rate <= 0:
        rate = probe(path).sample_rate
    if wave.size == 0:
        raise MediaError(path, "audio track holds no samples", kind="no_audio")
    return wave.astype(np.float32, copy=False), rate


def load_audio(path: str | Path, sample_rate: int = 16000, backend: str = "auto",
               info: MediaInfo | None = None) -> np.ndarray:
    """Decode the first audio track: mono float32 ``(S,)`` at ``sample_rate`` (channels averaged).

    ``S = round(native_samples * sample_rate / native_rate)``. Raises :class:`MediaError`.
    """
    backend = _resolve_backend(backend)
    path = _check_readable(path)
    info = info or probe(path)  # PyAV header check before decord ever sees the file
    if not info.has_audio:
        raise MediaError(path, "no audio track", kind="no_audio")
    use_decord = backend == "decord" or (backend == "auto" and _have_decord())
    if use_decord and info.channels != 1:
        if backend == "decord":
            _warn_once("decord 0.6 mixes up the channels of multi-channel audio; "
                       "multi-channel audio is read with PyAV instead")
        use_decord = False
    wave, rate = _audio_decord(path) if use_decord else _audio_pyav(path)
    mono = wave.mean(axis=0) if wave.shape[0] > 1 else wave[0]
    return resample(mono, rate, sample_rate)


# ---------------------------------------------------------------------------------- video


def select_frames(times: np.ndarray, fps: float, duration: float | None = None) -> np.ndarray:
    """Indices of the source frames on screen at ``c / fps`` for ``c = 0 .. T-1``.

    ``times``: ``(N,)`` presentation times (seconds, increasing, first frame at 0).
    ``duration``: end of the last frame (default: last time + median frame interval).
    ``T = floor(duration * fps + 0.001)``. Returns int64 ``(T,)``.
    """
    times = np.asarray(times, dtype=np.float64)
    if times.size == 0:
        return np.zeros(0, dtype=np.int64)
    if duration is None:
        step = float(np.median(np.diff(times))) if times.size > 1 else 1.0 / fps
        duration = float(times[-1]) + step
    n_out = int(np.floor(duration * fps + 1e-3))
    targets = np.arange(n_out, dtype=np.float64) / fps
    idx = np.searchsorted(times, targets + _TIME_EPS, side="right") - 1
    return np.clip(idx, 0, times.size - 1).astype(np.int64)


def _video_decord(path: Path, fps: float) -> np.ndarray:
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        n = len(reader)
        if n == 0:
            raise MediaError(path, "video track holds no frames", kind="no_video")
        stamps = reader.get_frame_timestamp(np.arange(n))  # (n, 2) start, end; from the stream start
        starts = stamps[:, 0].astype(np.float64)
        starts -= starts[0]
        src_fps = float(reader.get_avg_fps()) or fps
        step = float(np.median(np.diff(starts))) if n > 1 else 1.0 / src_fps
        if not step > 0:
            step = 1.0 / src_fps
        idx = select_frames(starts, fps, duration=float(starts[-1]) + step)
        if idx.size == 0:
            raise MediaError(path, "video too short for one output frame", kind="too_short")
        unique, inverse = np.unique(idx, return_inverse=True)
        frames = reader.get_batch(unique.tolist()).asnumpy()
    except MediaError:
        raise
    except Exception as e:  # noqa: BLE001
        raise MediaError(path, f"video cannot be decoded by decord ({str(e).splitlines()[-1][:200]})", kind="corrupt") from None
    return np.ascontiguousarray(frames[inverse])


def _video_pyav(path: Path, fps: float) -> np.ndarray:
    """Stream-decode and keep only the frames needed at ``fps`` (sample and hold)."""
    import av

    container = _open_av(path)
    try:
        if not container.streams.video:
            raise MediaError(path, "no video track", kind="no_video")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        out: list[np.ndarray] = []
        prev: np.ndarray | None = None
        times: list[float] = []
        t0 = 0.0

        def emit_until(t_end: float) -> None:
            # prev is on screen for output frames c with c / fps + eps < t_end
            while len(out) / fps + _TIME_EPS < t_end:
                out.append(prev)

        try:
            for frame in container.decode(stream):
                t = frame.time
                if t is None:
                    t = t0 + len(times) / float(stream.average_rate or fps)
                if not times:
                    t0 = float(t)
                t = float(t) - t0
                if prev is not None:
                    emit_until(t)
                prev = frame.to_ndarray(format="rgb24")
                times.append(t)
        except av.error.FFmpegError as e:
            if not times:
                raise MediaError(path, f"video cannot be decoded ({_ff_msg(e)})", kind="corrupt") from None
            raise MediaError(path, f"video decoding failed after {len(times)} frames ({_ff_msg(e)}): "
                                   "truncated or corrupt", kind="truncated") from None
        if prev is None:
            raise MediaError(path, "video track holds no frames", kind="no_video")
        rate = float(stream.average_rate or stream.guessed_rate or fps)
        step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / rate
        if not step > 0:
            step = 1.0 / rate
        n_out = int(np.floor((times[-1] + step) * fps + 1e-3))
        while len(out) < n_out:
            out.append(prev)
        if not out:
            raise MediaError(path, "video too short for one output frame", kind="too_short")
        return np.stack(out[:n_out])
    finally:
        container.close()


def load_video(path: str | Path, fps: float = 25.0, backend: str = "auto",
               info: MediaInfo | None = None) -> np.ndarray:
    """Decode the first video track: RGB uint8 ``(T, H, W, 3)`` at ``fps`` (by timestamps).

    Raises :class:`MediaError`. With ``backend="auto"`` a decord failure is retried with PyAV.
    """
    backend = _resolve_backend(backend)
    path = _check_readable(path)
    info = info or probe(path)  # PyAV header check before decord ever sees the file
    if not info.has_video:
        raise MediaError(path, "no video track", kind="no_video")
    if backend == "pyav" or (backend == "auto" and not _have_decord()):
        return _video_pyav(path, fps)
    try:
        return _video_decord(path, fps)
    except MediaError as e:
        if backend == "decord" or e.kind in ("no_video", "too_short"):
            raise
        log.debug("decord failed on %s (%s); retrying with PyAV", path, e.problem)
        return _video_pyav(path, fps)
