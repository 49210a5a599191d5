"""Tiny media files for tests, written with PyAV (no system ffmpeg): mp4 (h264 + AAC), avi
(mpeg4 + PCM), flv (Sorenson + mp3), wav; real face photos from scikit-image moving across a
background; dataset trees in each corpus' real naming and layout."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

CODECS = {  # container suffix -> (video codec, audio codec, audio sample format)
    ".mp4": ("libx264", "aac", "fltp"),
    ".avi": ("mpeg4", "pcm_s16le", "s16"),
    ".flv": ("flv", "libmp3lame", "fltp"),
    ".mkv": ("libx264", "aac", "fltp"),
}


def tone(seconds: float, sample_rate: int, freq: float = 220.0, seed: int = 0, amp: float = 0.5) -> np.ndarray:
    """A non-periodic test signal: a chirp plus a little noise, float32 ``(S,)``."""
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    rng = np.random.default_rng(seed)
    sig = np.sin(2 * np.pi * (freq * t + 150.0 * t ** 2)) + 0.05 * rng.standard_normal(n)
    return (amp * sig / np.abs(sig).max()).astype(np.float32) if n else np.zeros(0, np.float32)


def plain_frames(n: int, width: int = 64, height: int = 64, seed: int = 0) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 frames whose content identifies the frame index: the lower half is
    grey at :func:`frame_code` ``(i)`` (luma survives lossy codecs), the upper half is texture with
    a moving bar."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=(height, width, 3), dtype=np.uint8)
    frames = np.repeat(base[None], n, axis=0)
    for i in range(n):
        frames[i, height // 2:] = frame_code(i)
        x = (i * 3) % max(1, width - 6)
        frames[i, height // 8: height // 3, x:x + 6] = 255
    return frames


def frame_code(i: int | np.ndarray) -> np.ndarray:
    """Grey level that :func:`plain_frames` gives frame ``i`` (steps of 4, in [20, 236))."""
    return 20 + (np.asarray(i) * 4) % 216


def read_code(frames: np.ndarray) -> np.ndarray:
    """Frame indices (mod 54) read back from decoded :func:`plain_frames` ``(T, H, W, 3)``."""
    h = frames.shape[1]
    grey = frames[:, h // 2 + 4:, :, :].astype(float).mean(axis=(1, 2, 3))
    return np.round((grey - 20) / 4).astype(int)


def write_media(path: str | Path, *, frames: np.ndarray | None = None, fps: float = 25.0,
                wave: np.ndarray | None = None, sample_rate: int = 44100, channels: int = 1,
                faststart: bool = False, crf: int = 18) -> Path:
    """Write a media file. ``frames`` uint8 ``(T, H, W, 3)`` (None: no video track); ``wave``
    float ``(S,)`` or ``(C, S)`` (None: no audio track). ``.wav`` writes audio only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".wav":
        import soundfile as sf

        w = np.asarray(wave, dtype=np.float32)
        sf.write(str(path), w.T if w.ndim == 2 else w, sample_rate, subtype="PCM_16")
        return path
    vcodec, acodec, afmt = CODECS[path.suffix]
    options = {"movflags": "faststart"} if faststart else {}
    container = av.open(str(path), "w", options=options)
    vstream = astream = None
    if frames is not None:
        vstream = container.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1001))
        vstream.height, vstream.width = frames.shape[1:3]
        vstream.pix_fmt = "yuv420p"
        if vcodec == "libx264":
            vstream.options = {"crf": str(crf), "preset": "veryfast"}
        else:
            vstream.bit_rate = 4_000_000
    if wave is not None:
        astream = container.add_stream(acodec, rate=sample_rate)
        astream.layout = "mono" if channels == 1 else "stereo"
    if vstream is not None:
        for img in frames:
            for packet in vstream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
    if astream is not None:
        w = np.asarray(wave, dtype=np.float32)
        w = np.repeat(w[None], channels, axis=0) if w.ndim == 1 else w
        step = 1152 if acodec == "libmp3lame" else 1024
        for s in range(0, w.shape[1], step):
            chunk = np.ascontiguousarray(w[:, s:s + step])
            if afmt == "s16":
                data = (np.clip(chunk, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1)
            else:
                data = chunk
            frame = av.AudioFrame.from_ndarray(data, format=afmt, layout=astream.layout.name)
            frame.sample_rate = sample_rate
            frame.pts = s
            for packet in astream.encode(frame):
                container.mux(packet)
        for packet in astream.encode():
            container.mux(packet)
    container.close()
    return path


def write_clip(path: str | Path, seconds: float = 1.0, fps: float = 25.0, size: tuple[int, int] = (64, 64),
               sample_rate: int = 44100, channels: int = 1, audio: bool = True, video: bool = True,
               face: bool = False, seed: int = 0, **kw) -> Path:
    """A short clip: ``size`` = (width, height); ``face=True`` shows a real face photo."""
    n = int(round(seconds * fps))
    frames = None
    if video:
        frames = face_frames(n, width=size[0], height=size[1], seed=seed)[0] if face else \
            plain_frames(n, size[0], size[1], seed=seed)
    wave = tone(seconds, sample_rate, seed=seed) if audio else None
    return write_media(path, frames=frames, fps=fps, wave=wave, sample_rate=sample_rate,
                       channels=channels, **kw)


# ----------------------------------------------------------------------------- faces


@lru_cache(maxsize=4)
def face_photo(which: str = "astronaut", size: int = 80) -> np.ndarray:
    """A real face from scikit-image, ``(size, size, 3)`` uint8, the face centred in it
    (astronaut: Eileen Collins; the face box is ~60 % of the patch)."""
    import cv2
    import skimage.data

    if which == "astronaut":
        img = skimage.data.astronaut()
        cx, cy, side = 224, 113, 160  # Haar box (177, 66, 95, 95) + margin
        patch = img[cy - side // 2: cy + side // 2, cx - side // 2: cx + side // 2]
    elif which.startswith("lfw"):
        faces = skimage.data.lfw_subset()  # 100 faces then 100 non-faces, 25x25 grey in [0, 1]
        k = int(which[3:] or 0)
        patch = np.repeat((faces[k] * 255).astype(np.uint8)[..., None], 3, axis=2)
    else:
        raise ValueError(which)
    return cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=cv2.INTER_AREA)


def face_frames(n: int, width: int = 160, height: int = 120, face_size: int = 64,
                hidden: Sequence[int] = (), seed: int = 0, which: str = "astronaut",
                path: Callable[[float], tuple[float, float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A face photo moving across a textured background. Returns ``frames (n, H, W, 3)`` and the
    true face centres ``(n, 2)`` (x, y). Frames in ``hidden`` show the background only."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    bg = np.stack([(xx * 255 // max(1, width - 1)), (yy * 255 // max(1, height - 1)),
                   np.full_like(xx, 120)], axis=-1).astype(np.uint8)
    bg = np.clip(bg.astype(int) + rng.integers(-10, 10, size=bg.shape), 0, 255).astype(np.uint8)
    face = face_photo(which, face_size)
    half = face_size // 2
    if path is None:
        def path(u: float) -> tuple[float, float]:
            return (half + 2 + u * (width - face_size - 4), height / 2 + 0.25 * (height - face_size) * np.sin(2 * np.pi * u))
    frames = np.repeat(bg[None], n, axis=0)
    centres = np.zeros((n, 2), dtype=np.float32)
    hidden = set(hidden)
    for i in range(n):
        cx, cy = path(i / max(1, n - 1))
        x0, y0 = int(round(cx)) - half, int(round(cy)) - half
        centres[i] = (x0 + half, y0 + half)
        if i not in hidden:
            frames[i, y0:y0 + face_size, x0:x0 + face_size] = face
    return frames, centres


# ----------------------------------------------------------------------------- trees


def _av_clip(path: Path, seconds: float, face: bool, seed: int, size=(96, 96), fps=25.0, **kw) -> Path:
    return write_clip(path, seconds=seconds, fps=fps, size=size, face=face, seed=seed, **kw)


def ravdess_tree(root: str | Path, actors: Sequence[int] = (1, 2), emotions: Sequence[int] = (1, 5),
                 seconds: float = 0.6, face: bool = True, extras: bool = True, sample_rate: int = 48000) -> Path:
    """``Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4``: AV speech clips for every (actor, emotion), plus
    (extras) a video-only file (02), an audio-only wav (03) and an AV song (VV 02) to be skipped."""
    root = Path(root)
    for a in actors:
        d = root / f"Actor_{a:02d}"
        for e in emotions:
            intensity = 1 if e == 1 else 2
            _av_clip(d / f"01-01-{e:02d}-{intensity:02d}-01-01-{a:02d}.mp4", seconds, face, seed=a * 10 + e,
                     sample_rate=sample_rate)
        if extras:
            _av_clip(d / f"02-01-{emotions[0]:02d}-01-01-02-{a:02d}.mp4", seconds, face, seed=a, audio=False)
            write_media(d / f"03-01-{emotions[0]:02d}-01-01-02-{a:02d}.wav", wave=tone(seconds, 48000), sample_rate=48000)
            _av_clip(d / f"01-02-{emotions[0]:02d}-01-01-02-{a:02d}.mp4", seconds, face, seed=a + 1)
    return root


def cremad_tree(root: str | Path, actors: Sequence[int] = (1001, 1002), emos: Sequence[str] = ("ANG", "NEU", "SAD"),
                seconds: float = 0.6, face: bool = True) -> Path:
    """``VideoFlash/ActorID_Sentence_EMO_Level.flv`` (30 fps Sorenson + mp3) + ``AudioWAV/*.wav``."""
    root = Path(root)
    for a in actors:
        for j, emo in enumerate(emos):
            level = "XX" if emo == "NEU" else "HI"
            name = f"{a}_{['DFA', 'IEO', 'TIE'][j % 3]}_{emo}_{level}"
            _av_clip(root / "VideoFlash" / f"{name}.flv", seconds, face, seed=a + j, fps=30.0, sample_rate=44100)
            write_media(root / "AudioWAV" / f"{name}.wav", wave=tone(seconds, 16000), sample_rate=16000)
    return root


ENTERFACE_EMOS = {"anger": "an", "disgust": "di", "fear": "fe", "happiness": "ha", "sadness": "sa", "surprise": "su"}


def enterface_tree(root: str | Path, subjects: Sequence[int] = (1, 2), emotions: Sequence[str] = ("anger", "fear"),
                   sentences: Sequence[int] = (1,), seconds: float = 0.6, face: bool = True) -> Path:
    """``subject N/emotion/sentence K/sN_xx_K.avi`` (mpeg4 + PCM); subject 6 without sentence folders
    as in the real corpus."""
    root = Path(root)
    for s in subjects:
        for emo in emotions:
            for k in sentences:
                folder = root / f"subject {s}" / emo
                if s != 6:
                    folder = folder / f"sentence {k}"
                _av_clip(folder / f"s{s}_{ENTERFACE_EMOS[emo]}_{k}.avi", seconds, face, seed=s * 7 + k, sample_rate=48000)
    return root


def voxceleb2_tree(root: str | Path, speakers: Sequence[str] = ("id00012", "id00015"), videos: int = 2,
                   seconds: float = 0.6) -> Path:
    """``dev/mp4/idXXXXX/<youtube id>/NNNNN.mp4`` (face-centred: detection not needed)."""
    root = Path(root)
    for i, spk in enumerate(speakers):
        for v in range(videos):
            yt = f"yt{i}{v}AbCdEfG"[:11]
            _av_clip(root / "dev" / "mp4" / spk / yt / f"{v + 1:05d}.mp4", seconds, face=True, seed=i * 3 + v,
                     size=(96, 96), sample_rate=16000)
    return root


def lrw_tree(root: str | Path, words: Sequence[str] = ("ABOUT", "WORLD"), per_split: int = 1,
             seconds: float = 1.16) -> Path:
    """``WORD/{train,val,test}/WORD_NNNNN.mp4`` (29 frames at 25 fps)."""
    root = Path(root)
    for w, word in enumerate(words):
        for split in ("train", "val", "test"):
            for n in range(per_split):
                _av_clip(root / word / split / f"{word}_{n + 1:05d}.mp4", seconds, face=True, seed=w * 5 + n,
                         size=(96, 96), sample_rate=16000)
    return root


def csv_tree(root: str | Path, rows: Sequence[dict], seconds: float = 0.6, name: str = "labels.csv") -> Path:
    """Clips at ``rows[i]["path"]`` plus a CSV with the rows' columns."""
    root = Path(root)
    for i, r in enumerate(rows):
        _av_clip(root / r["path"], seconds, face=True, seed=i)
    with open(root / name, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / name


def synthetic_tree(root: str | Path, speakers: Sequence[str] = ("spk00", "spk01"),
                   classes: Sequence[str] = ("neutral", "happy", "sad", "angry", "fearful", "disgust"),
                   per_speaker: int = 2, seconds: float = 0.6, sample_rate: int = 48000) -> Path:
    """A corpus in the synthetic generator's format: ``clips/<spk>/<id>.mp4`` + manifest.jsonl +
    dataset.json (root = the folder)."""
    from vqmae.data.manifest import ClipRecord, write_manifest

    root = Path(root)
    records = []
    for s, spk in enumerate(speakers):
        for j in range(per_speaker):
            label = (s + j) % len(classes)
            cid = f"{spk}_s{j:02d}_{classes[label]}"
            rel = f"clips/{spk}/{cid}.mp4"
            _av_clip(root / rel, seconds, face=True, seed=s * 10 + j, sample_rate=sample_rate)
            records.append(ClipRecord(id=cid, path=rel, speaker=spk, label=label, label_name=classes[label],
                                      targets={"arousal": 0.5, "valence": -0.25}, duration=seconds,
                                      fps=25.0, sample_rate=sample_rate, dataset="synthetic"))
    write_manifest(root, records, root=root, name="synthetic", classes=list(classes))
    return root


# ----------------------------------------------------------------------------- bad files


def truncate(path: str | Path, fraction: float = 0.5) -> Path:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
    return Path(path)


def garbage(path: str | Path, nbytes: int = 4096, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes())
    return path


def unreadable(path: str | Path) -> Path:
    os.chmod(path, 0)
    return Path(path)
