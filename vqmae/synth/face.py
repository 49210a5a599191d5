"""The face: per-frame expression / articulation / pose parameters, and their rendering with
OpenCV into face-centred RGB frames (like VoxCeleb2 crops).

The mouth of frame ``c`` follows the articulation at the frame's centre time (vowel opening,
spreading, rounding; lips shut on bilabials) scaled by the loudness of the audio in that frame.
Emotion moves the mouth corners, brows, eyes, cheeks and the amount of head motion; nuisance
factors are head pose, blinks, gaze, lighting (direction, level, colour, changes over time),
sensor noise and, in some clips, a partial occlusion (a hand, a microphone, a strand of hair).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from vqmae.synth.articulation import CONTROL_RATE, Articulation
from vqmae.synth.dsp import smooth
from vqmae.synth.emotion import FaceEmotion
from vqmae.synth.speakers import Speaker

_SHIFT = 4
_ONE = 1 << _SHIFT
MOUTH_INSIDE = (72, 22, 30)
"""RGB of the inside of an open mouth (before lighting and noise)."""
SCLERA = (236, 234, 228)
TEETH = (232, 228, 216)


@dataclass
class Scene:
    """Per-clip viewing conditions."""

    light_angle: float
    light_grad: float
    """Brightness difference across the frame (fraction)."""
    light_level: float
    light_wobble: float
    """Amplitude of slow brightness changes over time."""
    light_step: tuple[float, float] | None
    """(time s, factor): a sudden lighting change (a lamp switched), or None."""
    tint: tuple[float, float, float]
    noise_sigma: float
    occlusion: str
    """"none", "hand", "microphone" or "hair"."""
    occlusion_span: tuple[float, float]
    occlusion_pos: tuple[float, float]

    @classmethod
    def draw(cls, rng: np.random.Generator, duration: float) -> Scene:
        occ = "none"
        if rng.random() < 0.12:
            occ = str(rng.choice(["hand", "microphone", "hair"], p=[0.5, 0.3, 0.2]))
        t0 = float(rng.uniform(0.0, duration * 0.6))
        span = (t0, float(min(duration, t0 + rng.uniform(0.5, 1.5)))) if occ == "hand" else (0.0, duration)
        return cls(
            light_angle=float(rng.uniform(0, 2 * np.pi)), light_grad=float(rng.uniform(0.0, 0.45)),
            light_level=float(rng.uniform(0.72, 1.12)), light_wobble=float(rng.uniform(0.0, 0.06)),
            light_step=(float(rng.uniform(0.3, duration)), float(rng.uniform(0.8, 1.2))) if rng.random() < 0.1 else None,
            tint=tuple(float(v) for v in rng.uniform(0.92, 1.08, 3)),  # type: ignore[arg-type]
            noise_sigma=float(rng.uniform(1.0, 4.0)),
            occlusion=occ, occlusion_span=span,
            occlusion_pos=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))),
        )

    @classmethod
    def clean(cls) -> Scene:
        return cls(0.0, 0.0, 1.0, 0.0, None, (1.0, 1.0, 1.0), 0.0, "none", (0.0, 0.0), (0.0, 0.0))


TRACK_NAMES = ("open", "width", "round", "smile", "lip_press", "brow_inner", "brow_outer", "eye_open",
               "cheek", "head_x", "head_y", "roll", "yaw", "pitch", "scale", "gaze_x", "gaze_y",
               "occluded")


def face_tracks(art: Articulation, loudness: np.ndarray, spk: Speaker, emo: FaceEmotion,
                rng: np.random.Generator, *, fps: float, scene: Scene) -> dict[str, np.ndarray]:
    """Per-frame face parameters, each (T,) with T = len(loudness).

    ``loudness`` (T,): audio level of each video frame's span, about 1 for the loud frames of the
    utterance (see :func:`vqmae.synth.corpus.frame_loudness`).
    """
    n = len(loudness)
    t = (np.arange(n) + 0.5) / fps
    grid = np.arange(art.n)
    pos = t * CONTROL_RATE

    def at(x: np.ndarray) -> np.ndarray:
        return np.interp(pos, grid, x)

    # the expression builds up at the start and fluctuates a little
    onset = float(rng.uniform(0.1, 0.5))
    ramp = np.clip(t / onset, 0, 1)
    env = ramp * ramp * (3 - 2 * ramp) * (1 + 0.08 * _smooth_noise(rng, n, fps * 0.4))
    stress = at(art.stress)
    closed = np.clip(at(art.closed.astype(float)) * 1.6, 0, 1)
    lip_press = emo.lip_press * env
    loud = np.clip(loudness, 0.0, 1.25)
    mouth_open = at(art.open) * (0.3 + 0.7 * loud**0.7) * (1 - 0.45 * lip_press)
    mouth_open = (mouth_open + emo.jaw * env * 0.35) * (1 - closed)
    smile = spk.rest_smile + emo.smile * env
    width = at(art.width) + emo.mouth_width * env + 0.15 * np.maximum(smile, 0)
    # blinks: 2-5 frame closures, rate ~0.3/s scaled by the emotion
    blink = np.ones(n)
    k = 0
    while True:
        k += int(rng.exponential(fps / (0.3 * emo.blink))) + 3
        if k >= n:
            break
        for j, v in enumerate((0.5, 0.05, 0.25, 0.75)):
            if k + j < n:
                blink[k + j] = v
    cheek = emo.cheek * env
    eye_open = (1.0 + emo.eye_open * env - 0.25 * cheek) * blink
    brow_in = spk.rest_brow + emo.brow_inner * env + 0.3 * stress * spk.motion
    brow_out = spk.rest_brow + emo.brow_outer * env + 0.25 * stress * spk.motion
    amount = spk.motion * emo.head_motion
    head_x = amount * 2.2 * _smooth_noise(rng, n, fps * 0.5)
    head_y = amount * (1.5 * _smooth_noise(rng, n, fps * 0.5) + 0.8 * stress)
    roll = amount * 2.0 * _smooth_noise(rng, n, fps * 0.7)
    yaw = amount * 0.07 * _smooth_noise(rng, n, fps * 0.6)
    pitch = amount * 0.05 * _smooth_noise(rng, n, fps * 0.6) + 0.012 * emo.head_pitch * env + 0.02 * stress
    scale = 1.0 + 0.015 * _smooth_noise(rng, n, fps * 1.0)
    gaze = np.repeat(rng.uniform(-1, 1, (n // 12 + 1, 2)), 12, axis=0)[:n] * 1.2
    occluded = np.zeros(n)
    if scene.occlusion != "none":
        occluded = ((t >= scene.occlusion_span[0]) & (t <= scene.occlusion_span[1])).astype(float)
    return {
        "open": np.clip(mouth_open, 0.0, 1.3), "width": width, "round": at(art.round), "smile": smile,
        "lip_press": lip_press, "brow_inner": brow_in, "brow_outer": brow_out, "eye_open": eye_open,
        "cheek": cheek, "head_x": head_x, "head_y": head_y, "roll": roll, "yaw": yaw, "pitch": pitch,
        "scale": scale, "gaze_x": gaze[:, 0], "gaze_y": gaze[:, 1] * 0.5, "occluded": occluded,
    }


def _smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Smooth zero-mean noise of about unit standard deviation (n,)."""
    pad = int(3 * sigma) + 1
    x = smooth(rng.standard_normal(n + 2 * pad), sigma)[pad:pad + n]
    return x * np.sqrt(2 * np.sqrt(np.pi) * sigma)


# ------------------------------------------------------------------------------------ drawing


class _Pose:
    """Maps face coordinates (128-px reference units, origin at the face centre, y down) to
    fixed-point image coordinates; interior features shift with yaw/pitch (parallax)."""

    def __init__(self, p: dict[str, float], size: int):
        s = size / 128.0 * p["scale"]
        a = np.deg2rad(p["roll"])
        self.m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * s
        self.mt = (self.m @ np.diag([1.0 - 0.6 * abs(p["yaw"]), 1.0])).T
        self.c = np.array([size / 2 + p["head_x"] * size / 128, size * 0.52 + p["head_y"] * size / 128])
        self.yaw, self.pitch = p["yaw"], p["pitch"]
        self.s = s

    def __call__(self, pts: np.ndarray, depth: float = 1.0) -> np.ndarray:
        q = pts + (depth * self.yaw * 40.0, depth * self.pitch * 40.0)
        xy = q @ self.mt + self.c
        return np.rint(xy * _ONE).astype(np.int32)

    def thick(self, t: float) -> int:
        return max(1, int(round(t * self.s)))


@lru_cache(maxsize=64)
def _unit(num: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, num)


@lru_cache(maxsize=64)
def _circle(num: int, a0: float, a1: float) -> np.ndarray:
    th = np.linspace(a0, a1, num)
    return np.stack([np.cos(th), np.sin(th)], axis=1)


def _arc(x0: float, x1: float, y: Callable[[np.ndarray], np.ndarray], num: int = 12) -> np.ndarray:
    """Points (num, 2) of the curve y(x) for x from x0 to x1."""
    out = np.empty((num, 2))
    out[:, 0] = x0 + (x1 - x0) * _unit(num)
    out[:, 1] = y(out[:, 0])
    return out


def _ellipse(cx: float, cy: float, ax: float, ay: float, num: int = 28, a0: float = 0.0,
             a1: float = 2 * np.pi) -> np.ndarray:
    """Points (num, 2) of an axis-aligned ellipse (arc from angle a0 to a1)."""
    return _circle(num, a0, a1) * (ax, ay) + (cx, cy)


def _fill(img: np.ndarray, pts: np.ndarray, color) -> None:
    cv2.fillPoly(img, [pts], color, lineType=cv2.LINE_AA, shift=_SHIFT)


def _line(img: np.ndarray, pts: np.ndarray, color, thick: int) -> None:
    cv2.polylines(img, [pts], False, color, thick, lineType=cv2.LINE_AA, shift=_SHIFT)


def _mix(a, b, k: float) -> tuple[int, int, int]:
    k = min(max(k, 0.0), 1.0)
    return tuple(int(round(x * (1 - k) + y * k)) for x, y in zip(a, b))  # type: ignore[return-value]


def _scale_color(c, k: float) -> tuple[int, int, int]:
    return tuple(min(max(int(v * k), 0), 255) for v in c)  # type: ignore[return-value]


def background(spk: Speaker, size: int, rng: np.random.Generator) -> np.ndarray:
    """The speaker's recording background (size, size, 3) uint8, slightly varied per clip."""
    base = np.array(spk.background, dtype=np.float32) + rng.normal(0, 5, 3).astype(np.float32)
    y = np.linspace(-1, 1, size, dtype=np.float32)[:, None, None]
    img = base * (1.0 + 0.12 * y) * np.ones((size, size, 1), np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    r = size / 128.0
    if spk.background_kind == 1:  # a door / window frame
        x0 = int((8 + rng.uniform(0, 6)) * r)
        cv2.rectangle(img, (x0, int(6 * r)), (x0 + int(26 * r), int(110 * r)), _scale_color(spk.background, 0.7), max(1, int(3 * r)))
    elif spk.background_kind == 2:  # soft blobs (plants, furniture)
        for _ in range(3):
            c = (int(rng.uniform(0, size)), int(rng.uniform(0, size * 0.6)))
            cv2.circle(img, c, int(rng.uniform(8, 18) * r), _scale_color(spk.background, rng.uniform(0.75, 1.25)), -1, cv2.LINE_AA)
        img = cv2.GaussianBlur(img, (0, 0), 2.0 * r)
    return img


def render_frame(img: np.ndarray, p: dict[str, float], spk: Speaker, scene: Scene, t: float) -> None:
    """Draw the face with parameters ``p`` onto ``img`` (H, W, 3) uint8 RGB, in place."""
    size = img.shape[0]
    P = _Pose(p, size)
    skin = spk.skin
    dark_hair = _scale_color(spk.hair, 0.8)
    fw, fh = 34.0 * spk.face_w, 44.0 * spk.face_h
    jaw = 3.5 * p["open"]
    # hair behind the head, shoulders, neck
    if spk.hair_style == 1:
        _fill(img, P(_ellipse(0, 6, fw * 1.25, fh * 1.35), 0.0), spk.hair)
    _fill(img, P(_ellipse(0, 76, 60, 26, 24), 0.0), spk.clothes)
    _fill(img, P(np.array([[-13, 20], [13, 20], [15, 60], [-15, 60]]), 0.0), _scale_color(skin, 0.82))
    # ears, head (lower half follows the jaw), edge shading
    for sx in (-1, 1):
        _fill(img, P(_ellipse(sx * fw * 0.98, 2, 5, 9, 14), 0.0), _scale_color(skin, 0.9))
    upper = _ellipse(0, 0, fw, fh, 20, np.pi, 2 * np.pi)
    lower = _ellipse(0, 0, fw, fh + jaw, 20, 0, np.pi)
    _fill(img, P(np.concatenate([upper, lower]), 0.0), _scale_color(skin, 0.9))
    _fill(img, P(np.concatenate([upper * [0.88, 0.92], lower * [0.88, 0.94]]), 0.0), skin)
    if min(p["brow_inner"], p["brow_outer"]) > 0.35:  # forehead lines (under the hair)
        k = min((min(p["brow_inner"], p["brow_outer"]) - 0.35) * 0.6, 0.35)
        for dy in (0, 4):
            _line(img, P(_arc(-12, 12, lambda x, dy=dy: -31 - dy + 0.02 * x**2, 7), 0.9), _scale_color(skin, 1 - k), P.thick(1))
    # hair on top
    if spk.hair_style in (0, 1):
        cap = np.concatenate([_ellipse(0, 0, fw * 1.04, fh * 1.06, 16, np.pi, 2 * np.pi),
                              _arc(fw * 0.95, -fw * 0.95, lambda x: -fh * 0.64 + 0.1 * fh * np.cos(x / fw * 3))])
        _fill(img, P(cap, 0.0), spk.hair)
    elif spk.hair_style == 2:
        _fill(img, P(_ellipse(0, -fh * 0.72, fw * 0.7, fh * 0.3, 16, np.pi, 2 * np.pi), 0.0), _mix(skin, spk.hair, 0.5))
    else:
        for a in np.linspace(np.pi * 1.05, np.pi * 1.95, 7):
            cx, cy = fw * 0.85 * np.cos(a), fh * 0.85 * np.sin(a)
            _fill(img, P(_ellipse(cx, cy, 9, 8, 12), 0.0), spk.hair)
    mw = spk.mouth_w * (7.5 + 5.0 * p["width"]) * (1 - 0.2 * p["round"])
    ym = 21.0 * spk.face_h
    if spk.beard:
        beard = np.concatenate([_ellipse(0, 0, fw * 0.98, fh + jaw, 18, 0.05 * np.pi, 0.95 * np.pi),
                                _arc(-fw * 0.7, fw * 0.7, lambda x: ym - 6 + 0 * x, 6)])
        _fill(img, P(beard, 0.3), _mix(skin, spk.hair, 0.45))
    _draw_eyes(img, P, p, spk)
    _draw_brows(img, P, p, spk, dark_hair)
    # nose
    nl = 12.0 * spk.nose_len
    _line(img, P(np.array([[1.5, -2], [3.5, nl - 2], [0, nl]]), 1.6), _scale_color(skin, 0.72), P.thick(1))
    for sx in (-1, 1):
        _fill(img, P(_ellipse(sx * 3.2, nl + 0.5, 1.6, 1.0, 10), 1.5), _scale_color(skin, 0.55))
    # expression lines
    if p["smile"] > 0.2:
        k = min((p["smile"] - 0.2) * 0.8, 0.45)
        for sx in (-1, 1):
            fold = np.array([[sx * 7, nl - 1], [sx * (mw + 1.5), ym - 4], [sx * (mw + 3), ym + 2]])
            _line(img, P(fold, 0.8), _scale_color(skin, 1 - k), P.thick(1))
    if p["brow_inner"] < -0.2:
        k = min((-p["brow_inner"] - 0.2) * 0.7, 0.4)
        for sx in (-1.5, 1.5):
            _line(img, P(np.array([[sx, -20], [sx * 0.8, -14]]), 1.0), _scale_color(skin, 1 - k), P.thick(1))
    _draw_mouth(img, P, p, spk, mw, ym)
    if spk.glasses:
        frame_c = (40, 40, 40)
        ex = 13.0 * spk.eye_spacing
        for sx in (-1, 1):
            _line(img, P(_ellipse(sx * ex, -8, 10.5, 7.5, 20), 1.0), frame_c, P.thick(1))
        _line(img, P(np.array([[-ex + 10, -9], [ex - 10, -9]]), 1.0), frame_c, P.thick(1))
    if p["occluded"] > 0.5:
        _draw_occluder(img, P, scene, spk, ym, t)


def _draw_eyes(img: np.ndarray, P: _Pose, p: dict[str, float], spk: Speaker) -> None:
    es = spk.eye_size
    ex, ye = 13.0 * spk.eye_spacing, -8.0
    ew = 8.0 * es
    up = 4.4 * es * max(p["eye_open"], 0.0)
    lo = 2.6 * es * max(min(p["eye_open"], 1.2), 0.0) * (1 - 0.4 * p["cheek"])
    lid = _scale_color(spk.skin, 0.93)
    # eye-local contours (x relative to the eye centre)
    top0 = _arc(-ew, ew, lambda x: ye - up * np.clip(1 - (x / ew) ** 2, 0, 1) ** 0.8)
    bot0 = _arc(ew, -ew, lambda x: ye + lo * np.clip(1 - (x / ew) ** 2, 0, 1) ** 0.9)
    hi0 = np.array([[ew + 1, ye - 6.5 * es], [-ew - 1, ye - 6.5 * es]])
    low0 = np.array([[-ew - 1, ye + 5.0 * es], [ew + 1, ye + 5.0 * es]])
    crease0 = _arc(-ew * 0.8, ew * 0.8, lambda x: ye - up - 2.2 + 0.04 * x**2, 6)
    for sx in (-1, 1):
        cx = sx * ex
        at = np.array([cx, 0.0])
        top, bot = top0 + at, bot0 + at
        if up + lo > 0.6:
            _fill(img, P(np.concatenate([top, bot]), 1.0), SCLERA)
            ic = (cx + p["gaze_x"], ye + 0.4 + p["gaze_y"])
            _fill(img, P(_ellipse(*ic, 3.3 * es, 3.3 * es, 16), 1.0), spk.iris)
            _fill(img, P(_ellipse(*ic, 1.4 * es, 1.4 * es, 10), 1.0), (12, 10, 10))
            # lids cover what lies outside the opening
            _fill(img, P(np.concatenate([top, hi0 + at]), 1.0), lid)
            _fill(img, P(np.concatenate([bot, low0 + at]), 1.0), spk.skin)
        _line(img, P(top, 1.0), (35, 25, 25), P.thick(1.3))
        _line(img, P(crease0 + at, 1.0), _scale_color(spk.skin, 0.8), P.thick(1))


def _draw_brows(img: np.ndarray, P: _Pose, p: dict[str, float], spk: Speaker, color) -> None:
    ex, yb = 13.0 * spk.eye_spacing, -8.0 - 9.0 * spk.eye_size
    for sx in (-1, 1):
        inner = (sx * (ex - 7.5), yb - 5.0 * p["brow_inner"])
        outer = (sx * (ex + 9.5), yb + 1.0 - 4.5 * p["brow_outer"])
        mid = (sx * (ex + 1.0), min(inner[1], outer[1]) - 1.8 - 0.5 * p["brow_outer"])
        _line(img, P(np.array([inner, mid, outer]), 1.0), color, P.thick(spk.brow_thick))


def _draw_mouth(img: np.ndarray, P: _Pose, p: dict[str, float], spk: Speaker, mw: float, ym: float) -> None:
    oh = 11.0 * p["open"]
    c = -5.0 * p["smile"]
    press = p["lip_press"]
    up = 2.4 * (1 - 0.5 * press) + 0.8 * p["round"]
    lo = 3.0 * (1 - 0.5 * press) + 0.8 * p["round"]
    wi = mw * (0.82 - 0.3 * p["round"])

    def mid(x):
        return ym + c * (x / mw) ** 2

    def bump(x, w):
        return np.clip(1 - (x / w) ** 2, 0, 1)

    outer_top = _arc(-mw, mw, lambda x: mid(x) - (0.4 * oh + up) * bump(x, mw) ** 0.5, 16)
    outer_bot = _arc(mw, -mw, lambda x: mid(x) + (0.6 * oh + lo) * bump(x, mw) ** 0.5, 16)
    _fill(img, P(np.concatenate([outer_top, outer_bot]), 1.2), spk.lips)
    if oh > 0.6:
        in_top = _arc(-wi, wi, lambda x: mid(x) - 0.4 * oh * bump(x, wi) ** 0.7, 14)
        in_bot = _arc(wi, -wi, lambda x: mid(x) + 0.6 * oh * bump(x, wi) ** 0.7, 14)
        _fill(img, P(np.concatenate([in_top, in_bot]), 1.2), MOUTH_INSIDE)
        if oh > 2.0:
            th = min(0.3 * oh, 2.4)
            teeth_top = _arc(-0.7 * wi, 0.7 * wi, lambda x: mid(x) - 0.4 * oh * bump(x, wi) ** 0.7, 8)
            teeth_bot = teeth_top[::-1] + [0, th]
            _fill(img, P(np.concatenate([teeth_top, teeth_bot]), 1.2), TEETH)
    else:
        _line(img, P(_arc(-mw * 0.95, mw * 0.95, mid, 12), 1.2), _scale_color(spk.lips, 0.55), P.thick(1))


def _draw_occluder(img: np.ndarray, P: _Pose, scene: Scene, spk: Speaker, ym: float, t: float) -> None:
    ox, oy = scene.occlusion_pos
    if scene.occlusion == "hand":
        cx, cy = 14 * ox, ym + 6 + 5 * oy
        _fill(img, P(_ellipse(cx, cy + 14, 17, 13, 20), 0.0), _scale_color(spk.skin, 0.95))
        for k in range(4):
            fx = cx - 11 + 7.3 * k
            _fill(img, P(_ellipse(fx, cy - 2, 3.4, 10, 12), 0.0), _scale_color(spk.skin, 0.97 - 0.02 * k))
    elif scene.occlusion == "microphone":
        cx, cy = 10 + 8 * ox, ym + 10 + 4 * oy
        _fill(img, P(np.array([[cx - 2.5, cy], [cx + 2.5, cy], [cx + 4, 70], [cx - 4, 70]]), 0.0), (30, 30, 32))
        _fill(img, P(_ellipse(cx, cy - 3, 7, 8, 16), 0.0), (55, 55, 60))
    elif scene.occlusion == "hair":
        sx = 1 if ox > 0 else -1
        strand = np.array([[sx * 4, -40], [sx * 12, -18], [sx * 15, -4], [sx * 20, 12]])
        _line(img, P(strand, 0.5), spk.hair, P.thick(5))


def render_frames(tracks: dict[str, np.ndarray], spk: Speaker, scene: Scene, size: int, fps: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Frames (T, size, size, 3) uint8 RGB: face drawn per frame, then lighting and sensor noise."""
    n = len(tracks["open"])
    bg = background(spk, size, rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    field = 1.0 + scene.light_grad * (xx * np.cos(scene.light_angle) + yy * np.sin(scene.light_angle))
    field = (field[..., None] * np.array(scene.tint, np.float32)).astype(np.float32)
    t = np.arange(n) / fps
    level = scene.light_level * (1 + scene.light_wobble * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 6.3)))
    if scene.light_step is not None:
        level = level * np.where(t >= scene.light_step[0], scene.light_step[1], 1.0)
    # sensor noise: random crops of a few independent noise fields (fresh noise per frame is slow)
    m = 16
    bank = rng.standard_normal((4, size + m, size + m, 3), dtype=np.float32) * np.float32(scene.noise_sigma)
    picks = rng.integers(0, [4, m, m], size=(n, 3))
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    names = list(tracks)
    for i in range(n):
        img = bg.copy()
        render_frame(img, {k: float(tracks[k][i]) for k in names}, spk, scene, float(t[i]))
        x = img.astype(np.float32)
        x *= field * np.float32(level[i])
        if scene.noise_sigma > 0:
            b, dy, dx = picks[i]
            x += bank[b, dy:dy + size, dx:dx + size]
        np.clip(x, 0, 255, out=x)
        out[i] = x
    return out
