"""Visually guided self-supervised speech representations (Shukla et al., ICASSP 2020, TAC 2021).

An audio encoder (log-mel -> one vector per 25 fps video frame) learns by animating a still face
into the talking face of the audio (``task="visual"``), by predicting PASE-style audio targets
(``task="audio"``) or both (``task="multitask"``). The encoder is kept for downstream use.

    from vqmae.vssl import VSSLModel, VSSLConfig, AudioEncoder, vssl_model_preset, vssl_loss
"""

from vqmae.vssl.config import (
    TASKS,
    AudioEncoderConfig,
    GeneratorConfig,
    PretextConfig,
    VSSLConfig,
    vssl_model_preset,
)
from vqmae.vssl.encoder import AudioEncoder
from vqmae.vssl.features import PaseTargets
from vqmae.vssl.losses import mouth_mask, mouth_weights, vssl_loss
from vqmae.vssl.model import VSSLModel, to_model_images, to_uint8_images

__all__ = [
    "TASKS", "AudioEncoder", "AudioEncoderConfig", "GeneratorConfig", "PaseTargets", "PretextConfig",
    "VSSLConfig", "VSSLModel", "mouth_mask", "mouth_weights", "to_model_images", "to_uint8_images",
    "vssl_loss", "vssl_model_preset",
]
