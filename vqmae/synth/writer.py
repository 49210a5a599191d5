"""Writing one audiovisual clip with PyAV: H.264 video (yuv420p) + AAC audio, mp4 or flv,
atomically (temporary file, then rename)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from vqmae.io import atomic_path


def write_clip(path: str | Path, frames: np.ndarray, audio: np.ndarray, *, fps: float,
               sample_rate: int, container: str = "mp4", crf: int = 20,
               audio_bitrate: int = 96_000) -> Path:
    """Write ``frames`` (T, H, W, 3) uint8 RGB and ``audio`` (S,) float32 mono in [-1, 1].

    H and W must be even (4:2:0 chroma). Video timestamps are frame indices at ``fps``; the
    AAC stream starts at 0 (mp4 records the encoder delay in an edit list, so decoders return
    sample 0 first; flv has no edit list, so readers see 1024 priming samples first).
    """
    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"frame size must be even, got {w}x{h}")
    audio = np.asarray(audio, dtype=np.float32).reshape(1, -1)
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format=container) as out:
            vs = out.add_stream("libx264", rate=int(round(fps)))
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            vs.options = {"crf": str(crf), "preset": "veryfast"}
            vs.codec_context.thread_count = 1
            aud = out.add_stream("aac", rate=sample_rate, layout="mono")
            aud.bit_rate = audio_bitrate
            aud.options = {"aac_coder": "fast"}
            for i in range(t):
                vf = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
                vf.pts = i
                out.mux(vs.encode(vf))
            out.mux(vs.encode(None))
            af = av.AudioFrame.from_ndarray(audio, format="fltp", layout="mono")
            af.sample_rate = sample_rate
            af.pts = 0
            out.mux(aud.encode(af))
            out.mux(aud.encode(None))
    return path
