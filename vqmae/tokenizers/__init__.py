"""Stage one: audio and visual VQ-VAE tokenizers behind one interface (:class:`Tokenizer`)."""

from vqmae.tokenizers.base import Tokenizer

__all__ = ["Tokenizer"]
