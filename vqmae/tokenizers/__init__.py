"""Stage one: audio and visual VQ-VAE tokenizers behind one interface (:class:`Tokenizer`).

    from vqmae.tokenizers import AudioVQVAE, VisualVQVAE, audio_preset, visual_preset, load_tokenizer
    audio = AudioVQVAE(audio_preset("paper"))     # 2 s of 16 kHz audio -> (100, 64) codes of 256
    visual = VisualVQVAE(visual_preset("paper"))  # 50 faces 96×96      -> (50, 24, 24) codes of 512
    tok = load_tokenizer("runs/audio_tok/model")  # any saved tokenizer folder
"""

from __future__ import annotations

from pathlib import Path

from vqmae.tokenizers.audio import AUDIO_PRESETS, AudioVQVAE, AudioVQVAEConfig, audio_preset
from vqmae.tokenizers.base import Tokenizer
from vqmae.tokenizers.quantizer import QuantizerConfig, VectorQuantizer
from vqmae.tokenizers.visual import VISUAL_PRESETS, VisualVQVAE, VisualVQVAEConfig, visual_preset


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """Load a tokenizer model folder (``save_pretrained``); CPU, eval mode.

    A ``train-tokenizer`` run folder works too (its ``model/`` subfolder is loaded).
    """
    from vqmae.checkpoint import CONFIG_NAME, ModelFolderError, load_pretrained

    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file() and (folder / "model" / CONFIG_NAME).is_file():
        folder = folder / "model"
    model = load_pretrained(folder)
    if not isinstance(model, Tokenizer):
        raise ModelFolderError(f"{folder}: holds a '{model.architecture}' model, not a tokenizer")
    return model


def tokenizer_preset(modality: str, name: str, **overrides):
    """``audio_preset`` or ``visual_preset`` by modality."""
    if modality == "audio":
        return audio_preset(name, **overrides)
    if modality == "visual":
        return visual_preset(name, **overrides)
    raise ValueError(f"unknown modality '{modality}' (audio, visual)")


def build_tokenizer(modality: str, config) -> Tokenizer:
    """``AudioVQVAE(config)`` or ``VisualVQVAE(config)`` by modality."""
    return AudioVQVAE(config) if modality == "audio" else VisualVQVAE(config)


__all__ = [
    "AUDIO_PRESETS",
    "VISUAL_PRESETS",
    "AudioVQVAE",
    "AudioVQVAEConfig",
    "QuantizerConfig",
    "Tokenizer",
    "VectorQuantizer",
    "VisualVQVAE",
    "VisualVQVAEConfig",
    "audio_preset",
    "build_tokenizer",
    "load_tokenizer",
    "tokenizer_preset",
    "visual_preset",
]
