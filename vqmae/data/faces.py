"""Face crops: per-frame Haar detection, temporal smoothing, gap filling, square crops.

Pipeline for a clip of ``T`` frames (never drops a frame):

1. :func:`track_boxes` runs OpenCV's frontal-face Haar cascade (on frames downscaled so the longer
   side is at most ``detect_max_side``) on every ``detect_every``-th frame and the last one, first
   in a window around the previous face at nearby sizes, then on the whole frame if that finds
   nothing. Between two keyframe detections that agree (centre moved at most ``max_jump`` × side,
   side changed at most 1.25×) the boxes are interpolated; where a keyframe finds no face or the
   box jumps, every frame in between is detected (re-detection on track loss).
   ``detect_every=1`` is :func:`detect_boxes`: every frame, whole frame. Each detection keeps one
   box: the largest, or among boxes at least half as large, the one nearest the previous
   detection. Misses are ``NaN``.
2. :func:`track_from_boxes` turns boxes into a square track ``(cx, cy, side)`` per frame: isolated
   detections far from their neighbours are discarded as false positives, gaps are filled by
   linear interpolation (held constant before the first / after the last detection), and the
   track is smoothed with a centred moving average of ``smooth`` frames.
3. :func:`crop_track` cuts ``side * (1 + 2 * margin)`` squares around the centres (edge pixels
   replicated outside the frame) and resizes them to ``size`` (INTER_AREA when shrinking).

A clip with no detection at all raises :class:`NoFaceError` (``MediaError`` kind ``no_face``).
Raw detections are cached on disk per file (:class:`FaceCache`) so detection runs once.
Face-centred sources (VoxCeleb2, the synthetic corpus) skip detection: :func:`centre_crop`.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from vqmae.config import _check_range, setting
from vqmae.data.media import MediaError
from vqmae.io import atomic_write_bytes

CASCADE = "haarcascade_frontalface_default.xml"
FACE_CACHE_VERSION = 2
_ROI = 1.0  # keyframe search window: the previous box grown by this × its side on each side
_SIZE_RANGE = (0.7, 1.4)  # ... at face sides within this range of the previous side
_SIDE_RATIO = 1.25  # keyframe boxes whose sides differ more than this are re-detected in between


class NoFaceError(MediaError):
    """No face detected in any frame of a clip."""

    def __init__(self, path: str | Path, problem: str = "no face detected in any frame"):
        super().__init__(path, problem, kind="no_face")


@dataclass(frozen=True)
class DetectorConfig:
    """Haar-cascade and tracking settings (they are part of the cache key)."""

    scale_factor: float = setting(1.1, gt=1, le=2, help="Haar pyramid step between scales.")
    min_neighbors: int = setting(5, ge=0, le=50, help="Haar: overlapping hits needed to keep a box.")
    min_size_frac: float = setting(0.1, gt=0, le=1, help="Smallest face side as a fraction of the "
                                   "frame's shorter side.")
    detect_max_side: int = setting(320, ge=64, le=4096, help="Frames are downscaled so that their longer "
                                   "side is at most this before detection.")
    detect_every: int = setting(5, ge=1, le=50, help="Detect on every k-th frame and interpolate between "
                                "agreeing detections (1 = every frame; misses and jumps re-detect every frame).")
    max_jump: float = setting(0.5, gt=0, le=5, help="Two keyframe boxes agree when their centres are at most "
                              "this x the face side apart (else every frame between them is detected).")

    def __post_init__(self) -> None:  # also when built directly or from JSON (a ConfigError)
        for name, f in self.__dataclass_fields__.items():
            _check_range(f, getattr(self, name), f"detector.{name}")


@dataclass
class FaceTrack:
    """A square face track. Shapes: ``centers (T, 2)`` (x, y pixels), ``sides (T,)`` pixels,
    ``detected (T,)`` bool (a kept detection in that frame), ``raw (T, 4)`` x, y, w, h (NaN = none)."""

    centers: np.ndarray
    sides: np.ndarray
    detected: np.ndarray
    raw: np.ndarray

    def __len__(self) -> int:
        return int(self.sides.shape[0])


@lru_cache(maxsize=1)
def _cascade():
    import cv2

    path = cv2.data.haarcascades + CASCADE
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV Haar cascade not found at {path} (needs opencv-python-headless < 5)")
    return cascade


class _Detector:
    """The cascade on one clip: grey, downscaled, equalised frames made once each; detections in
    frame pixels ``(x, y, w, h)`` or ``None``."""

    def __init__(self, frames: np.ndarray, cfg: DetectorConfig):
        h, w = frames.shape[1:3]
        self.frames, self.cfg = frames, cfg
        self.scale = min(1.0, cfg.detect_max_side / max(h, w))
        self.min_side = max(24, int(round(cfg.min_size_frac * min(h, w) * self.scale)))
        self.cascade = _cascade()
        self.calls = 0  # cascade runs (whole frame or window)

    def _gray(self, i: int) -> np.ndarray:
        import cv2

        gray = cv2.cvtColor(self.frames[i], cv2.COLOR_RGB2GRAY)
        if self.scale < 1.0:
            gray = cv2.resize(gray, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_AREA)
        return cv2.equalizeHist(gray)

    def _run(self, gray: np.ndarray, min_side: int, max_side: int = 0) -> np.ndarray:
        """Cascade detections, deterministic: OpenCV's threads gather candidates in a varying order
        and its grouping of candidates depends on that order (the same frame gave other boxes from
        run to run), so the cascade runs on one thread; the result is sorted."""
        import cv2

        self.calls += 1
        kw = {"maxSize": (max_side, max_side)} if max_side else {}
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            found = self.cascade.detectMultiScale(gray, scaleFactor=self.cfg.scale_factor,
                                                  minNeighbors=self.cfg.min_neighbors,
                                                  minSize=(min_side, min_side), **kw)
        finally:
            cv2.setNumThreads(threads)
        found = np.asarray(found, dtype=np.float32).reshape(-1, 4)
        return found[np.lexsort(found.T[::-1])] if len(found) > 1 else found

    def detect(self, i: int, prev: np.ndarray | None = None, window: bool = False) -> np.ndarray | None:
        """One box in frame ``i``; ``window``: search around ``prev`` first (whole frame if none)."""
        gray = self._gray(i)
        s = self.scale
        cand = np.zeros((0, 4), np.float32)
        if window and prev is not None:
            x, y, w, h = prev * s
            side = max(w, h)
            x0, y0 = max(0, int(x - _ROI * side)), max(0, int(y - _ROI * side))
            x1 = min(gray.shape[1], int(np.ceil(x + w + _ROI * side)))
            y1 = min(gray.shape[0], int(np.ceil(y + h + _ROI * side)))
            lo = max(self.min_side, int(_SIZE_RANGE[0] * side))
            hi = int(np.ceil(_SIZE_RANGE[1] * side))
            if x1 - x0 >= lo and y1 - y0 >= lo:
                cand = self._run(gray[y0:y1, x0:x1], lo, hi)
                cand[:, :2] += (x0, y0)
        if len(cand) == 0:
            cand = self._run(gray, self.min_side)
        if len(cand) == 0:
            return None
        cand = cand / s
        areas = cand[:, 2] * cand[:, 3]
        if prev is not None and len(cand) > 1:
            big = cand[areas >= 0.5 * areas.max()]
            centres = big[:, :2] + big[:, 2:] / 2
            pc = prev[:2] + prev[2:] / 2
            return big[int(np.argmin(((centres - pc) ** 2).sum(1)))]
        return cand[int(np.argmax(areas))]


def detect_boxes(frames: np.ndarray, cfg: DetectorConfig = DetectorConfig()) -> np.ndarray:
    """Every-frame, whole-frame detection (the reference :func:`track_boxes` is checked against).
    ``frames`` uint8 ``(T, H, W, 3)`` RGB -> float32 ``(T, 4)`` boxes ``(x, y, w, h)`` in frame
    pixels, ``NaN`` rows where no face was found."""
    det = _Detector(frames, cfg)
    boxes = np.full((frames.shape[0], 4), np.nan, dtype=np.float32)
    prev: np.ndarray | None = None
    for i in range(frames.shape[0]):
        box = det.detect(i, prev)
        if box is not None:
            boxes[i] = prev = box
    return boxes


def _agree(a: np.ndarray, b: np.ndarray, max_jump: float) -> bool:
    sa, sb = max(a[2], a[3]), max(b[2], b[3])
    dist = np.hypot(*((a[:2] + a[2:] / 2) - (b[:2] + b[2:] / 2)))
    return bool(dist <= max_jump * 0.5 * (sa + sb) and max(sa, sb) <= _SIDE_RATIO * min(sa, sb))


def track_boxes(frames: np.ndarray, cfg: DetectorConfig = DetectorConfig(),
                stats: dict | None = None) -> np.ndarray:
    """Keyframe detection + interpolation (module doc, step 1). Same contract as
    :func:`detect_boxes`: ``(T, H, W, 3)`` uint8 -> ``(T, 4)`` float32 boxes, ``NaN`` = no face.
    Interpolated frames get boxes too (the face is tracked there). ``stats`` (optional) receives
    ``cascade_runs`` and ``frames_detected``."""
    t = frames.shape[0]
    k = cfg.detect_every
    if k <= 1 or t <= 2:
        boxes = detect_boxes(frames, cfg)
        if stats is not None:
            stats.update(cascade_runs=t, frames_detected=t)
        return boxes
    det = _Detector(frames, cfg)
    boxes = np.full((t, 4), np.nan, dtype=np.float32)
    keys = list(range(0, t, k)) + ([t - 1] if (t - 1) % k else [])
    last: np.ndarray | None = None
    for i in keys:
        box = det.detect(i, last, window=True)
        if box is not None:
            boxes[i] = last = box
    examined = len(keys)
    for a, b in zip(keys[:-1], keys[1:]):
        if b - a < 2:
            continue
        ba, bb = boxes[a], boxes[b]
        if not (np.isnan(ba).any() or np.isnan(bb).any()) and _agree(ba, bb, cfg.max_jump):
            u = (np.arange(a + 1, b) - a)[:, None] / (b - a)
            boxes[a + 1:b] = (1 - u) * ba + u * bb
            continue
        prev = None if np.isnan(ba).any() else ba  # track lost or jumped: detect every frame
        for i in range(a + 1, b):
            box = det.detect(i, prev, window=prev is not None)
            examined += 1
            if box is not None:
                boxes[i] = prev = box
    if stats is not None:
        stats.update(cascade_runs=det.calls, frames_detected=examined)
    return boxes


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or x.shape[0] < 2:
        return x
    half = window // 2
    padded = np.pad(x, ((half, half),) + ((0, 0),) * (x.ndim - 1), mode="edge")
    kernel = np.ones(2 * half + 1) / (2 * half + 1)
    return np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(x.shape[1])], axis=1)


def track_from_boxes(boxes: np.ndarray, smooth: int = 5, outlier: float = 0.6,
                     path: str | Path = "") -> FaceTrack:
    """Square track from raw per-frame boxes ``(T, 4)`` (NaN = no detection); see module doc.

    ``outlier``: a detection whose centre lies farther than ``outlier * median side`` from the
    median centre of the detections within ±``smooth`` frames is dropped.
    Raises :class:`NoFaceError` when no frame has a detection.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    t = boxes.shape[0]
    ok = ~np.isnan(boxes).any(axis=1)
    if not ok.any():
        raise NoFaceError(path or "<frames>")
    feats = np.stack([boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2,
                      np.maximum(boxes[:, 2], boxes[:, 3])], axis=1)  # (T, 3) cx, cy, side
    if ok.sum() >= 3:
        idx = np.flatnonzero(ok)
        keep = ok.copy()
        win = max(smooth, 2)
        for i in idx:
            near = idx[np.abs(idx - i) <= win]
            med = np.median(feats[near], axis=0)
            if np.hypot(*(feats[i, :2] - med[:2])) > outlier * med[2] or not (0.5 * med[2] <= feats[i, 2] <= 2 * med[2]):
                keep[i] = False
        if keep.any():
            ok = keep
    frames = np.arange(t)
    filled = np.stack([np.interp(frames, frames[ok], feats[ok, j]) for j in range(3)], axis=1)
    smoothed = _moving_average(filled, smooth)
    return FaceTrack(centers=smoothed[:, :2].astype(np.float32), sides=smoothed[:, 2].astype(np.float32),
                     detected=ok, raw=boxes.astype(np.float32))


def crop_square(frame: np.ndarray, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """Crop the square of ``side`` pixels centred at ``(cx, cy)`` (edges replicated outside the
    frame) and resize to ``(size, size, 3)`` uint8."""
    import cv2

    h, w = frame.shape[:2]
    s = max(1, int(round(side)))
    x0 = int(round(cx - s / 2))
    y0 = int(round(cy - s / 2))
    xs = np.clip(np.arange(x0, x0 + s), 0, w - 1)
    ys = np.clip(np.arange(y0, y0 + s), 0, h - 1)
    if x0 >= 0 and y0 >= 0 and x0 + s <= w and y0 + s <= h:
        patch = frame[y0:y0 + s, x0:x0 + s]
    else:
        patch = frame[ys[:, None], xs[None, :]]
    if s == size:
        return np.ascontiguousarray(patch)
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=interp)


def crop_track(frames: np.ndarray, track: FaceTrack, size: int = 96, margin: float = 0.25) -> np.ndarray:
    """``frames (T, H, W, 3)`` -> face crops uint8 ``(T, size, size, 3)``; side = track side × (1 + 2·margin)."""
    if len(track) != frames.shape[0]:
        raise ValueError(f"track has {len(track)} frames, video has {frames.shape[0]}")
    out = np.empty((frames.shape[0], size, size, 3), dtype=np.uint8)
    for i in range(frames.shape[0]):
        cx, cy = track.centers[i]
        out[i] = crop_square(frames[i], float(cx), float(cy), float(track.sides[i]) * (1 + 2 * margin), size)
    return out


def centre_crop(frames: np.ndarray, size: int = 96) -> np.ndarray:
    """Face-centred sources: the centred square of side min(H, W), resized -> ``(T, size, size, 3)``."""
    t, h, w = frames.shape[:3]
    side = min(h, w)
    out = np.empty((t, size, size, 3), dtype=np.uint8)
    for i in range(t):
        out[i] = crop_square(frames[i], w / 2, h / 2, side, size)
    return out


# ----------------------------------------------------------------------------------- cache


def file_fingerprint(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content key of a media file: size + SHA-1 of its first and last ``chunk`` bytes.
    Survives moving or copying the dataset; changes when the file does."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha1(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            h.update(f.read(chunk))
    return h.hexdigest()[:20]


class FaceCache:
    """Raw per-frame detections of each file, one ``.npz`` per (file content, fps, detector)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def key(self, path: str | Path, fps: float, cfg: DetectorConfig) -> str:
        params = f"v{FACE_CACHE_VERSION}|{fps:.6g}|{sorted(asdict(cfg).items())}"
        return f"{file_fingerprint(path)}-{hashlib.sha1(params.encode()).hexdigest()[:8]}"

    def get(self, path: str | Path, fps: float, cfg: DetectorConfig) -> np.ndarray | None:
        f = self.dir / f"{self.key(path, fps, cfg)}.npz"
        if not f.is_file():
            return None
        try:
            with np.load(f) as data:
                return data["boxes"].astype(np.float32)
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
            return None

    def put(self, path: str | Path, fps: float, cfg: DetectorConfig, boxes: np.ndarray) -> Path:
        buf = io.BytesIO()
        np.savez(buf, boxes=np.asarray(boxes, dtype=np.float32), source=np.array(os.fspath(path)))
        return atomic_write_bytes(self.dir / f"{self.key(path, fps, cfg)}.npz", buf.getvalue())


def face_track(frames: np.ndarray, path: str | Path = "", fps: float = 25.0,
               cfg: DetectorConfig = DetectorConfig(), cache_dir: str | Path = "",
               smooth: int = 5) -> FaceTrack:
    """Detect (or read cached detections), then :func:`track_from_boxes`.
    ``frames``: the clip's frames at ``fps`` ``(T, H, W, 3)``; ``path`` keys the cache."""
    cache = FaceCache(cache_dir) if cache_dir and path else None
    boxes = cache.get(path, fps, cfg) if cache else None
    if boxes is None or boxes.shape[0] != frames.shape[0]:
        boxes = track_boxes(frames, cfg)
        if cache:
            cache.put(path, fps, cfg, boxes)
    return track_from_boxes(boxes, smooth=smooth, path=path)
