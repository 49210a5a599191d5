"""The corpus: presets, the plan of clips, one clip's synthesis (audio + frames, before any
encoding) and the generation of a whole corpus with parallel workers, written as media files +
``manifest.jsonl`` + ``dataset.json`` + ``DATASHEET.md``.

Every clip draws its randomness from (corpus seed, clip id) and its speaker from (corpus seed,
speaker id), so a clip is the same whatever the number of workers or the other clips.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vqmae.config import setting
from vqmae.data.manifest import (
    DATASET_INFO_NAME,
    MANIFEST_NAME,
    ClipRecord,
    read_manifest,
    write_manifest,
)
from vqmae.io import read_json
from vqmae.synth.articulation import articulate
from vqmae.synth.datasheet import write_datasheet
from vqmae.synth.emotion import (
    EMOTIONS,
    INTENSITIES,
    affect,
    face_state,
    sample_expressiveness,
    voice_state,
)
from vqmae.synth.face import Scene, face_tracks, render_frames
from vqmae.synth.layouts import clip_path, container_of, layout_classes
from vqmae.synth.speakers import Speaker, make_speaker, speaker_id, speaker_number, stable_hash
from vqmae.synth.vocabulary import (
    SENTENCES,
    TINY_SENTENCES,
    WORDS,
    Timeline,
    build_timeline,
    sentence_text,
)
from vqmae.synth.voice import Recording, synthesize_voice

log = logging.getLogger("vqmae")

GENERATOR_VERSION = 1
"""Bumped whenever the same config would give different clips."""
DATASET_NAME = "synthetic"
FPS = 25.0
PRETRAIN_FIRST_SPEAKER = 101
"""Unlabelled speakers are numbered from here; labelled presets use 1..99, so they never meet."""


@dataclass
class SynthConfig:
    """Settings of ``vqmae synth`` (0 = the preset's default)."""

    preset: Literal["tiny", "demo", "pretrain"] = "demo"
    out: str = ""
    """Output folder (required)."""
    seed: int = 0
    speakers: int = 0
    """Number of speakers (tiny 6, demo 30, pretrain 40)."""
    clips: int = 0
    """pretrain: number of clips (default 2000); tiny/demo: keep only the first N planned clips."""
    layout: Literal["vqmae", "ravdess", "crema-d"] = "vqmae"
    workers: int = setting(0, ge=0)
    """Parallel processes (0 = one per CPU core, at most 8; 1 = in this process)."""
    sample_rate: int = 0
    """Audio rate of the files: 44100 or 48000 (tiny 44100, others 48000)."""
    frame_size: int = 128
    """Video frames are frame_size x frame_size (even)."""
    overwrite: bool = False
    """Regenerate even if OUT already holds a corpus (the same or another one)."""


@dataclass(frozen=True)
class Preset:
    speakers: int
    first_speaker: int
    labelled: bool
    sentences: tuple[int, ...]
    min_duration: float
    max_duration: float
    sample_rate: int
    clips: int = 0
    """Unlabelled presets: default number of clips."""


PRESETS: dict[str, Preset] = {
    "tiny": Preset(6, 1, True, TINY_SENTENCES, 1.0, 2.0, 44100),
    # 30 speakers: 5 folds of 18 training / 6 validation / 6 test speakers, like real acted
    # corpora (RAVDESS 24, CREMA-D 91); with 6 training speakers token models learn the speakers,
    # not the emotions (issue 13)
    "demo": Preset(30, 1, True, (0, 1), 2.0, 4.0, 48000),
    "pretrain": Preset(40, PRETRAIN_FIRST_SPEAKER, False, (), 2.0, 4.0, 48000, clips=2000),
}


@dataclass
class ClipSpec:
    """Everything that defines one clip (the generator's input)."""

    id: str
    speaker: str
    emotion: str
    """Emotion acted in the clip (also for unlabelled clips, where it is not written out)."""
    intensity: str
    words: tuple[int, ...]
    sentence: int
    """Index into SENTENCES, or -1 for a random word sequence."""
    sentence_pos: int
    """Position of the sentence in the preset's sentence list (for dataset naming)."""
    repetition: int = 1
    labelled: bool = True
    seed: int = 0
    fps: float = FPS
    sample_rate: int = 48000
    frame_size: int = 128
    min_duration: float = 2.0
    max_duration: float = 4.0
    voice_expressiveness: float | None = None
    """Override the drawn expressiveness (tests, analysis)."""
    face_expressiveness: float | None = None
    clean: bool = False
    """No background noise, reverberation, lighting changes, sensor noise or occlusion."""


@dataclass
class ClipArrays:
    """A generated clip before encoding.

    ``audio`` float32 (S,) at ``sample_rate`` with S = T * sample_rate / fps; ``frames`` uint8
    (T, H, W, 3) RGB; ``speech`` float32 (S,) the dry speech; ``loudness`` (T,) speech level per
    video frame; ``face`` per-frame face parameters (T,) each; ``f0`` / ``voicing`` control tracks
    at 200 per second.
    """

    spec: ClipSpec
    speaker: Speaker
    audio: np.ndarray
    speech: np.ndarray
    frames: np.ndarray
    loudness: np.ndarray
    face: dict[str, np.ndarray]
    f0: np.ndarray
    voicing: np.ndarray
    timeline: Timeline
    recording: Recording
    scene: Scene
    voice_expressiveness: float
    face_expressiveness: float
    arousal: float
    valence: float

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def duration(self) -> float:
        return self.num_frames / self.spec.fps


# ------------------------------------------------------------------------------------ planning


def resolve(cfg: SynthConfig) -> tuple[Preset, int, int, int]:
    """(preset, number of speakers, number of clips (0 = all planned), sample rate), checked."""
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; choose one of {list(PRESETS)}")
    p = PRESETS[cfg.preset]
    n_spk = cfg.speakers or p.speakers
    if n_spk < 1:
        raise ValueError(f"speakers must be >= 1, got {n_spk}")
    if p.labelled and n_spk > 99:
        raise ValueError(f"labelled presets have at most 99 speakers (ids spk01..spk99), got {n_spk}")
    sr = cfg.sample_rate or p.sample_rate
    if sr not in (44100, 48000):
        raise ValueError(f"sample_rate must be 44100 or 48000, got {sr}")
    if cfg.frame_size < 32 or cfg.frame_size % 2:
        raise ValueError(f"frame_size must be even and >= 32, got {cfg.frame_size}")
    if cfg.clips < 0:
        raise ValueError(f"clips must be >= 0, got {cfg.clips}")
    n_clips = cfg.clips or p.clips
    if not p.labelled and cfg.layout != "vqmae":
        raise ValueError(f"layout {cfg.layout!r} needs labelled clips; the {cfg.preset} preset is unlabelled")
    return p, n_spk, n_clips, sr


def plan_corpus(cfg: SynthConfig) -> list[ClipSpec]:
    """The clips of a corpus, in a fixed order (speaker-major for labelled presets)."""
    p, n_spk, n_clips, sr = resolve(cfg)
    common = dict(seed=cfg.seed, fps=FPS, sample_rate=sr, frame_size=cfg.frame_size,
                  min_duration=p.min_duration, max_duration=p.max_duration)
    speakers = [speaker_id(p.first_speaker + i) for i in range(n_spk)]
    specs: list[ClipSpec] = []
    if cfg.preset == "tiny":
        for i, spk in enumerate(speakers):
            for j, emo in enumerate((EMOTIONS[i % 6], EMOTIONS[(i + 3) % 6])):
                inten = "normal" if emo == "neutral" or j == 1 else "strong"
                pos = (2 * i + j) % len(p.sentences)
                s = p.sentences[pos]
                specs.append(ClipSpec(f"{spk}_s{s + 1}_{emo}_{inten}_r1", spk, emo, inten, SENTENCES[s], s, pos, **common))
    elif p.labelled:
        for spk in speakers:
            for emo in EMOTIONS:
                variants = [("normal", 1), ("normal", 2)] if emo == "neutral" else [(i, 1) for i in INTENSITIES]
                for inten, rep in variants:
                    for pos, s in enumerate(p.sentences):
                        specs.append(ClipSpec(f"{spk}_s{s + 1}_{emo}_{inten}_r{rep}", spk, emo, inten,
                                              SENTENCES[s], s, pos, repetition=rep, **common))
    else:
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, stable_hash("plan:" + cfg.preset)]))
        probs = np.array([0.4] + [0.12] * 5)
        for i in range(n_clips):
            spk = speakers[i % n_spk]
            emo = EMOTIONS[int(rng.choice(6, p=probs))]
            inten = INTENSITIES[int(rng.integers(2))]
            words = tuple(int(w) for w in rng.integers(0, len(WORDS), int(rng.integers(2, 6))))
            specs.append(ClipSpec(f"{spk}_u{i:05d}", spk, emo, inten, words, -1, 0, labelled=False, **common))
    if p.labelled and n_clips:
        specs = specs[:n_clips]
    return specs


# ----------------------------------------------------------------------------------- synthesis


@lru_cache(maxsize=256)
def _speaker(seed: int, sid: str) -> Speaker:
    return make_speaker(seed, sid)


def frame_loudness(speech: np.ndarray, samples_per_frame: int) -> np.ndarray:
    """Speech level per video frame (T,): frame RMS / 90th percentile of the active frames."""
    n = len(speech) // samples_per_frame
    rms = np.sqrt(np.mean(speech[: n * samples_per_frame].reshape(n, -1).astype(np.float64) ** 2, axis=1))
    active = rms[rms > rms.max() * 0.05] if rms.max() > 0 else rms
    ref = np.percentile(active, 90) if len(active) else 1.0
    return rms / max(ref, 1e-9)


def synthesize_clip(spec: ClipSpec) -> ClipArrays:
    """Generate one clip's audio and frames (deterministic in ``spec``)."""
    spk = _speaker(spec.seed, spec.speaker)
    ss = np.random.SeedSequence([spec.seed, stable_hash(spec.id)])
    r_time, r_expr, r_voice, r_face, r_render = (np.random.default_rng(s) for s in ss.spawn(5))
    ev = spec.voice_expressiveness
    ev = sample_expressiveness(r_expr, spk.voice_style) if ev is None else ev
    ef = spec.face_expressiveness
    ef = sample_expressiveness(r_expr, spk.face_style) if ef is None else ef
    arousal, valence = affect(spec.emotion, spec.intensity, ev, ef, r_expr)
    vemo = voice_state(spec.emotion, spec.intensity, ev)
    femo = face_state(spec.emotion, spec.intensity, ef)
    tl = build_timeline(spec.words, r_time, rate=spk.rate * vemo.rate, pause_scale=vemo.pauses,
                        fps=spec.fps, min_duration=spec.min_duration, max_duration=spec.max_duration)
    art = articulate(tl)
    voice = synthesize_voice(tl, art, spk, vemo, r_voice, sample_rate=spec.sample_rate,
                             recording=Recording.clean() if spec.clean else None)
    n_frames = int(round(tl.duration * spec.fps))
    spf = int(round(spec.sample_rate / spec.fps))
    loud = frame_loudness(voice.speech, spf)[:n_frames]
    scene = Scene.clean() if spec.clean else Scene.draw(r_render, tl.duration)
    tracks = face_tracks(art, loud, spk, femo, r_face, fps=spec.fps, scene=scene)
    frames = render_frames(tracks, spk, scene, spec.frame_size, spec.fps, r_render)
    return ClipArrays(spec=spec, speaker=spk, audio=voice.audio, speech=voice.speech, frames=frames,
                      loudness=loud, face=tracks, f0=voice.f0, voicing=voice.voicing, timeline=tl,
                      recording=voice.recording, scene=scene, voice_expressiveness=ev,
                      face_expressiveness=ef, arousal=arousal, valence=valence)


def clip_record(clip: ClipArrays, path: str, classes: tuple[str, ...]) -> ClipRecord:
    """The manifest row of a generated clip (``path`` relative to the corpus root)."""
    spec, rec = clip.spec, clip.recording
    targets: dict[str, Any] = {}
    if spec.labelled:
        targets.update(arousal=round(clip.arousal, 4), valence=round(clip.valence, 4),
                       intensity=spec.intensity)
    targets.update(
        sentence=spec.sentence, words=list(spec.words), text=sentence_text(spec.words),
        word_spans=[[round(a, 3), round(b, 3)] for a, b in clip.timeline.word_spans],
    )
    if spec.labelled:
        targets.update(repetition=spec.repetition,
                       voice_expressiveness=round(clip.voice_expressiveness, 3),
                       face_expressiveness=round(clip.face_expressiveness, 3))
    targets.update(
        gender=clip.speaker.gender,
        snr_db=round(rec.snr_db, 2) if np.isfinite(rec.snr_db) else None,
        noise=rec.noise_kind, reverb_rt60=round(rec.rt60, 3), occlusion=clip.scene.occlusion,
        num_frames=clip.num_frames, num_samples=len(clip.audio),
    )
    label = classes.index(spec.emotion) if spec.labelled else None
    return ClipRecord(id=spec.id, path=path, speaker=spec.speaker, label=label,
                      label_name=spec.emotion if spec.labelled else None, targets=targets,
                      duration=round(clip.duration, 6), fps=spec.fps, sample_rate=spec.sample_rate,
                      dataset=DATASET_NAME)


# ---------------------------------------------------------------------------------- generation


def _make_one(job: tuple[ClipSpec, str, str, tuple[str, ...]]) -> tuple[dict[str, Any], dict[str, float]]:
    """Worker: synthesise + write one clip; returns (manifest row, timings in seconds: wall
    clock of synthesis and writing, and the process CPU time of both)."""
    from vqmae.synth.writer import write_clip

    spec, root, rel, classes = job
    t0, c0 = time.perf_counter(), time.process_time()
    clip = synthesize_clip(spec)
    t1 = time.perf_counter()
    write_clip(Path(root) / rel, clip.frames, clip.audio, fps=spec.fps, sample_rate=spec.sample_rate,
               container=container_of(rel))
    t2, c2 = time.perf_counter(), time.process_time()
    return clip_record(clip, rel, classes).to_dict(), {"synth_s": t1 - t0, "write_s": t2 - t1,
                                                       "cpu_s": c2 - c0}


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def default_workers() -> int:
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(n, 8))


def fingerprint(cfg: SynthConfig) -> str:
    """Hash of everything that decides the corpus content (not workers / overwrite)."""
    d = _public(cfg)
    d["generator_version"] = GENERATOR_VERSION
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def generate_corpus(cfg: SynthConfig) -> dict[str, Any]:
    """Generate the corpus described by ``cfg`` into ``cfg.out``. Returns a summary dict.

    A folder that already holds the same corpus (same fingerprint, all files present) is left
    as it is. A folder holding another corpus is refused. ``cfg.overwrite`` regenerates in both
    cases (and deletes the media files of the previous corpus that the new one does not rewrite).
    """
    if not cfg.out:
        raise ValueError("set the output folder: --out DIR")
    preset, n_spk, _, sr = resolve(cfg)
    out = Path(cfg.out)
    fp = fingerprint(cfg)
    classes = layout_classes(cfg.layout)
    specs = plan_corpus(cfg)
    jobs = []
    for s in specs:
        rel = clip_path(cfg.layout, clip_id=s.id, speaker=s.speaker, number=speaker_number(s.speaker),
                        emotion=s.emotion if s.labelled else None, intensity=s.intensity,
                        sentence_pos=s.sentence_pos, repetition=s.repetition)
        if rel is not None:
            jobs.append((s, str(out), rel, classes))
    paths = [j[2] for j in jobs]
    if len(set(paths)) != len(paths):
        raise RuntimeError("two clips map to the same file name in this layout")
    old = _existing(out)
    if old is not None:
        if not cfg.overwrite and old.get("synth", {}).get("fingerprint") == fp \
                and (out / MANIFEST_NAME).is_file() and all((out / p).is_file() for p in paths):
            log.info("synth: %s already holds this corpus (%d clips); nothing to do", out, len(paths))
            return {"out": str(out), "clips": len(paths), "skipped": True, "fingerprint": fp}
        if not cfg.overwrite:
            raise FileExistsError(f"{out} already holds a corpus made with other settings "
                                  f"(fingerprint {old.get('synth', {}).get('fingerprint')} vs {fp}); "
                                  "use --overwrite or another --out")
    stale: list[str] = []
    if old is not None:  # an interrupted rerun must not leave the old manifest beside new files
        stale = _old_paths(out)
        for name in (MANIFEST_NAME, DATASET_INFO_NAME):
            (out / name).unlink(missing_ok=True)
    workers = cfg.workers or default_workers()
    log.info("synth: generating %d clips (%s preset, %d speakers, %s layout) into %s with %d worker(s)",
             len(jobs), cfg.preset, n_spk, cfg.layout, out, workers)
    t0 = time.perf_counter()
    results = _run(jobs, workers)
    elapsed = time.perf_counter() - t0
    records = [ClipRecord.from_dict(r) for r, _ in results]
    keep = set(paths)
    for rel in stale:  # media of the previous corpus that this one did not rewrite
        if rel not in keep and (out / rel).is_file():
            (out / rel).unlink()
    summary_synth = {"fingerprint": fp, "generator_version": GENERATOR_VERSION, "config": _public(cfg),
                     "preset": cfg.preset, "layout": cfg.layout, "seed": cfg.seed}
    write_manifest(out, records, root=out, name=f"{DATASET_NAME}-{cfg.preset}", classes=list(classes),
                   extra={"synth": summary_synth})

    write_datasheet(out / "DATASHEET.md", records, cfg, classes=classes, sample_rate=sr, preset=preset,
                    generator_version=GENERATOR_VERSION)
    synth_s = float(sum(t["synth_s"] for _, t in results))
    write_s = float(sum(t["write_s"] for _, t in results))
    cpu_s = float(sum(t["cpu_s"] for _, t in results))
    summary = {"out": str(out), "clips": len(records), "skipped": False, "fingerprint": fp,
               "workers": workers, "seconds": round(elapsed, 3),
               "clips_per_s": round(len(records) / max(elapsed, 1e-9), 3),
               "audio_hours": round(sum(r.duration for r in records) / 3600, 4),
               "synth_s_per_clip": round(synth_s / max(len(records), 1), 4),
               "write_s_per_clip": round(write_s / max(len(records), 1), 4),
               "cpu_s_per_clip": round(cpu_s / max(len(records), 1), 4)}
    log.info("synth: %d clips in %.1f s (%.2f clips/s)", len(records), elapsed, summary["clips_per_s"])
    return summary


def _public(cfg: SynthConfig) -> dict[str, Any]:
    """The settings that decide the content (what ``fingerprint`` hashes)."""
    d = asdict(cfg)
    for k in ("out", "workers", "overwrite"):
        d.pop(k, None)
    return d


def _existing(out: Path) -> dict[str, Any] | None:
    info = out / DATASET_INFO_NAME
    if info.is_file():
        try:
            return read_json(info)
        except (OSError, ValueError):
            return {}
    if out.is_dir() and any(out.iterdir()):
        if (out / MANIFEST_NAME).exists():
            return {}
    return None


def _old_paths(out: Path) -> list[str]:
    """Media paths listed by the corpus manifest already in ``out`` (none if unreadable)."""
    try:
        return [r.path for r in read_manifest(out / MANIFEST_NAME).records]
    except (OSError, ValueError):
        return []


def _run(jobs: list, workers: int) -> list[tuple[dict[str, Any], dict[str, float]]]:
    n = len(jobs)
    step = max(1, n // 10)
    results = []
    if workers <= 1 or n <= 1:
        for i, job in enumerate(jobs):
            results.append(_make_one(job))
            if (i + 1) % step == 0 or i + 1 == n:
                log.info("synth: %d/%d clips", i + 1, n)
        return results
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, n), mp_context=ctx, initializer=_worker_init) as ex:
        for i, res in enumerate(ex.map(_make_one, jobs, chunksize=max(1, min(8, n // (4 * workers))))):
            results.append(res)
            if (i + 1) % step == 0 or i + 1 == n:
                log.info("synth: %d/%d clips", i + 1, n)
    return results


