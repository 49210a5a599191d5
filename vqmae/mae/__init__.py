"""Stage two: VQ-MAE-AV, a masked autoencoder on discrete audio and visual tokens."""

from vqmae.mae.config import MAEConfig, MAEConfigError, ModalitySpec, cfg_for_store, mae_preset
from vqmae.mae.losses import LossConfig, mae_loss, masked_code_ce, nt_xent
from vqmae.mae.masking import Mask, MaskingConfig, make_masks, random_mask, structured_mask
from vqmae.mae.model import VQMAEAV, VQMAEDecoder, VQMAEEncoder, count_parameters
from vqmae.mae.patching import patchify, unpatchify
from vqmae.mae.raw_mae import RawMAE, RawMAEConfig, raw_config_like

__all__ = [
    "MAEConfig", "MAEConfigError", "ModalitySpec", "cfg_for_store", "mae_preset",
    "LossConfig", "mae_loss", "masked_code_ce", "nt_xent",
    "Mask", "MaskingConfig", "make_masks", "random_mask", "structured_mask",
    "VQMAEAV", "VQMAEDecoder", "VQMAEEncoder", "count_parameters",
    "patchify", "unpatchify",
    "RawMAE", "RawMAEConfig", "raw_config_like",
]
