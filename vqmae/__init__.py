"""vqmae: self-supervised audiovisual speech representation learning (VQ-VAE tokenizers, VQ-MAE-AV)."""

__version__ = "0.1.0"
