"""``vqmae predict`` on VSSL fold models (``vssl-classifier``, ``inputs: wave``): how a media file
becomes the waveform windows the harness scores.

    files = WaveFiles(models)                       # models: [(VSSLClassifier, info), ...]
    wave, seconds = files.read("clip.mp4")          # float32 (S,) at the encoder's rate; MediaError if bad
    store = files.store(rows, [wave, ...])          # a memory store on the encoder's frame grid
    ds = window_dataset(store, range(len(store)), window, "all", ("wave",), model=model,
                        audio_loader=files.loader)  # the harness's WaveDataset windows

Each file is decoded by the project's one clip path (:func:`vqmae.data.clips.load_clip`, audio-only,
with the clip settings recorded in the model and the encoder's sample rate; checked like
``tokenize``: ``too_short`` / ``silent`` / ``truncated`` files raise a ``MediaError``), peak-normalised
as in training. Windows start on the encoder's frame grid (40 ms; the harness uses the token store's
audio grid, 20 ms at the paper rates: the same windows where a clip is a whole number of frames).
The rest (windows of the model's recorded length, stride, averaging over windows and fold models,
the output rows) is :func:`vqmae.evaluation.prediction.predict_files`'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vqmae.config import ConfigError
from vqmae.data.clips import load_clip, resolve_clip_config
from vqmae.data.memory_store import MemoryTokenStore
from vqmae.vssl.harness import reads_waves


class WaveFiles:
    """The waveform side of ``vqmae predict`` for VSSL fold models (module doc)."""

    def __init__(self, models: Sequence[tuple[Any, dict[str, Any]]]):
        if not all(reads_waves(m) for m, _ in models):
            raise ConfigError("model: the folder mixes waveform (VSSL) and token fold models; give one model folder")
        encs = {(m.config.encoder.sample_rate, m.config.encoder.samples_per_frame) for m, _ in models}
        if len(encs) > 1:
            raise ConfigError("model: the fold models' encoders read audio at different rates; give one model folder")
        ((self.sample_rate, self.samples_per_frame),) = encs
        info = models[0][1]
        self.clip_config = resolve_clip_config(info.get("clip_config") or {}, detect_faces=False,
                                               sample_rate=self.sample_rate)
        self.waves: list[np.ndarray] = []

    def read(self, path: str) -> tuple[np.ndarray, float]:
        """One media file → (peak-normalised float32 ``(S,)`` at the encoder's rate, seconds)."""
        clip = load_clip(path, self.clip_config, modalities=("audio",))
        wave = np.asarray(clip.audio, dtype=np.float32)
        if wave.shape[0] < self.samples_per_frame:
            raise ValueError("too short: no complete encoder frame")
        return wave, float(clip.duration)

    def store(self, rows: Sequence[Mapping[str, Any]], waves: Sequence[np.ndarray],
              classes: Sequence[str] = ()) -> MemoryTokenStore:
        """The files as a memory store whose one ``audio`` grid is the encoder's frames (placeholder
        zero tokens, ``S // samples_per_frame`` per file); :attr:`loader` gives their waveforms."""
        self.waves = list(waves)
        fps = self.sample_rate / self.samples_per_frame
        prov = {"audio": {"token_shape": [1], "codebook_size": 1, "frames_per_second": fps,
                          "fingerprint": "<predict: encoder frames>"}}
        grid = [{"audio": np.zeros((w.shape[0] // self.samples_per_frame, 1), np.int64)} for w in self.waves]
        return MemoryTokenStore.from_arrays(rows, grid, prov, classes, name="<predict>")

    def loader(self, i: int) -> np.ndarray:
        """Store clip index → its waveform float32 ``(S,)``."""
        return self.waves[i]
