"""Settings of the visually guided self-supervised model (``vqmae.vssl``).

    cfg = VSSLConfig(task="multitask", encoder=AudioEncoderConfig(dim=128))
    cfg = vssl_model_preset("tiny", task="visual")

``task`` decides which parts are built: ``visual`` (audio encoder + identity encoder + frame
decoder: talking-face generation), ``audio`` (audio encoder + pretext head: PASE-style targets)
or ``multitask`` (both, losses weighted by ``visual_weight`` / ``audio_weight``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vqmae.config import setting
from vqmae.data.clips import samples_per_frame

TASKS = ("visual", "audio", "multitask")


@dataclass
class AudioEncoderConfig:
    """Log-mel front end + temporal stack; one output vector per video frame."""

    sample_rate: int = setting(16000, ge=8000, help="audio rate the encoder expects (Hz)")
    fps: float = setting(25.0, gt=0, help="video frame rate: one feature vector per video frame")
    n_fft: int = setting(400, ge=64, help="STFT size of the log-mel front end (25 ms at 16 kHz)")
    hop_length: int = setting(160, ge=1, help="STFT hop (10 ms); must divide sample_rate / fps")
    n_mels: int = setting(64, ge=8, help="mel bands")
    channels: int = setting(128, ge=8, help="width of the convolutional stack")
    conv_layers: int = setting(2, ge=0, le=8, help="residual conv blocks (kernel 3) at the video rate")
    rnn: Literal["gru", "none"] = "gru"
    """A bidirectional GRU after the convolutions (``none``: convolutions only)."""
    rnn_layers: int = setting(1, ge=1, le=4, help="GRU layers")
    dim: int = setting(128, ge=4, help="output feature size D")
    dropout: float = setting(0.1, ge=0, lt=1, help="dropout inside the stack")

    @property
    def samples_per_frame(self) -> int:
        return samples_per_frame(self.sample_rate, self.fps)

    @property
    def hops_per_frame(self) -> int:
        return self.samples_per_frame // self.hop_length

    def __post_init__(self) -> None:
        spf = self.samples_per_frame
        if spf % self.hop_length:
            raise ValueError(f"hop_length {self.hop_length} must divide samples per video frame {spf}")


@dataclass
class GeneratorConfig:
    """Identity encoder (U-Net down path) + frame decoder (U-Net up path with audio FiLM)."""

    face_size: int = setting(64, ge=16, help="side of the square face crops (pixels), a multiple of 2**levels")
    base_channels: int = setting(32, ge=4, help="channels of the first identity-encoder level")
    levels: int = setting(4, ge=2, le=6, help="downsamplings of the identity encoder")
    max_channels: int = setting(256, ge=8, help="channel cap per level")
    audio_window: int = setting(2, ge=0, le=12, help="audio steps on each side of the target frame (window 2k+1)")
    audio_code: int = setting(64, ge=4, help="size of the per-frame audio code fed to the decoder")
    skips: bool = True
    """U-Net skip connections from the identity encoder (False: bottleneck only)."""
    mask_still_mouth: bool = True
    """Grey out the mouth region of the still before the identity encoder (as Wav2Lip masks its
    reference): the decoder cannot copy the still's mouth and must draw it from the audio."""

    def __post_init__(self) -> None:
        if self.face_size % (2 ** self.levels):
            raise ValueError(f"face_size {self.face_size} must be a multiple of 2**levels = {2 ** self.levels}")


@dataclass
class PretextConfig:
    """Audio-only pretext: per-frame PASE-style targets (see ``vqmae.vssl.features``)."""

    n_mfcc: int = setting(13, ge=1, le=40, help="MFCC coefficients among the targets")
    n_mels: int = setting(40, ge=8, help="mel bands the MFCCs are computed from")
    fmin_pitch: float = setting(60.0, gt=0, help="lowest pitch searched by the voicing proxy (Hz)")
    fmax_pitch: float = setting(400.0, gt=0, help="highest pitch searched (Hz)")
    hidden: int = setting(256, ge=4, help="hidden size of the prediction head (one per target group)")

    @property
    def num_targets(self) -> int:
        # MFCCs, log-energy, voicing, log-f0, spectral centroid, log spectral flatness
        return self.n_mfcc + 5


@dataclass
class VSSLConfig:
    """The whole model (see the module docstring)."""

    task: Literal["visual", "audio", "multitask"] = "multitask"
    encoder: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    pretext: PretextConfig = field(default_factory=PretextConfig)
    visual_weight: float = setting(1.0, ge=0, help="weight of the talking-face loss (visual / multitask)")
    audio_weight: float = setting(1.0, ge=0, help="weight of the audio pretext loss (audio / multitask)")
    mouth_weight: float = setting(4.0, ge=0, help="extra L1 weight on the mouth region (1 + w there)")
    mouth_top: float = setting(0.6, ge=0, lt=1, help="mouth region: rows from this fraction of the crop height down")
    mouth_left: float = setting(0.2, ge=0, lt=0.5, help="mouth region: columns from this fraction to 1 - it")
    adversarial_weight: float = setting(0.0, ge=0, help="frame discriminator (LSGAN) term; 0 = off")
    disc_channels: int = setting(32, ge=4, help="channels of the frame discriminator's first layer")

    def __post_init__(self) -> None:
        for name, cls in (("encoder", AudioEncoderConfig), ("generator", GeneratorConfig),
                          ("pretext", PretextConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, cls(**value))
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.pretext.fmin_pitch >= self.pretext.fmax_pitch:
            raise ValueError("pretext.fmin_pitch must be below pretext.fmax_pitch")

    @property
    def visual(self) -> bool:
        return self.task in ("visual", "multitask")

    @property
    def audio(self) -> bool:
        return self.task in ("audio", "multitask")


_MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # tests: seconds on one CPU thread
    "tiny": dict(encoder=dict(n_mels=32, channels=32, conv_layers=1, dim=32, dropout=0.0),
                 generator=dict(face_size=32, base_channels=16, levels=3, max_channels=64,
                                audio_code=32, audio_window=1),
                 pretext=dict(hidden=64)),
    # 48 px: ~4.6 s per step of 8 x 12 frames on one CPU thread (see presets/vssl.yaml)
    "demo": dict(encoder=dict(n_mels=64, channels=96, conv_layers=2, dim=96),
                 generator=dict(face_size=48, base_channels=24, levels=3, max_channels=128,
                                audio_code=48, audio_window=2),
                 pretext=dict(hidden=128)),
    "base": {},
}


def vssl_model_preset(name: str, **overrides: Any) -> VSSLConfig:
    """A :class:`VSSLConfig` from a named size (``tiny`` | ``demo`` | ``base``) + top-level overrides."""
    if name not in _MODEL_PRESETS:
        raise ValueError(f"unknown vssl model preset {name!r} (known: {', '.join(_MODEL_PRESETS)})")
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in _MODEL_PRESETS[name].items()}
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(values.get(k), dict):
            values[k] = {**values[k], **v}
        else:
            values[k] = v
    return VSSLConfig(**values)
