"""Data: synthetic corpus, media decoding, face crops, dataset adapters, manifests, folds,
and the token store reader."""
