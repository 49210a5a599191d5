"""The embedded synthetic audiovisual emotional-speech corpus (the default dataset).

Talking cartoon faces with a source-filter voice, driven by one articulation timeline, acting six
emotions at two intensities, with speaker identity, content (words), and recording nuisances in
both modalities. ``vqmae synth`` writes it as real media files (H.264 + AAC) plus a manifest.

Modules: ``vocabulary`` (phones, words, sentences, timing) → ``articulation`` (control tracks) →
``voice`` (audio) and ``face`` (frames), with ``speakers`` and ``emotion`` as factors;
``corpus`` (presets, planning, workers, manifest), ``layouts`` (RAVDESS / CREMA-D naming),
``writer`` (PyAV), ``datasheet``, ``analysis`` (simple measurements for tests and benchmarks).

    from vqmae.synth import SynthConfig, generate_corpus, synthesize_clip, plan_corpus
    generate_corpus(SynthConfig(preset="tiny", out="data/tiny"))
"""

from vqmae.synth.corpus import (
    FPS,
    GENERATOR_VERSION,
    PRESETS,
    ClipArrays,
    ClipSpec,
    SynthConfig,
    clip_record,
    generate_corpus,
    plan_corpus,
    synthesize_clip,
)
from vqmae.synth.emotion import EMOTIONS, INTENSITIES
from vqmae.synth.layouts import LAYOUTS, layout_classes
from vqmae.synth.speakers import Speaker, make_speaker
from vqmae.synth.vocabulary import SENTENCES, WORDS

__all__ = [
    "EMOTIONS", "FPS", "GENERATOR_VERSION", "INTENSITIES", "LAYOUTS", "PRESETS", "SENTENCES", "WORDS",
    "ClipArrays", "ClipSpec", "Speaker", "SynthConfig", "clip_record", "generate_corpus",
    "layout_classes", "make_speaker", "plan_corpus", "synthesize_clip",
]
