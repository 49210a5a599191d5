"""Per-speaker code statistics: the reference a token model subtracts to be speaker-normalised.

Speakers differ in ways that are not emotion (base pitch, resting face, voice quality), and with
the 18–90 speakers of acted corpora a token model learns *who* speaks before it learns *how*.
Speech-emotion work standardises features per speaker; for discrete tokens the equivalent is a
per-speaker reference: how often each code appears at each token position over **all of that
speaker's frames** (only the speaker's own tokens, never labels). A model built with
``speaker_norm`` embeds its codes and subtracts the reference's expected embedding at every
position (:meth:`vqmae.mae.model.VQMAEEncoder.forward`), so it sees each clip relative to the
speaker's usual codes. At test time this is transductive in the usual way: a test speaker's
reference comes from its unlabelled test clips.

    refs = speaker_code_frequencies(store, modalities=("audio", "visual"))
    refs["spk03"]["audio"]        # float32 (prod(token_shape), codebook_size), rows sum to 1
    ds = with_speaker_reference(TokenDataset(store, ids, 1.0, "all"), refs)
    ds[0]["audio_ref"]            # the item's speaker's reference
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

REF_SUFFIX = "_ref"
"""A batch's reference for modality ``m`` is ``batch[m + REF_SUFFIX]``."""


def position_code_counts(tokens: np.ndarray, codebook_size: int) -> np.ndarray:
    """Frames ``(F, *S)`` → int64 ``(prod S * K,)``: how often each code appears at each position."""
    flat = np.asarray(tokens, dtype=np.int64).reshape(tokens.shape[0], -1)  # (F, P)
    P = flat.shape[1]
    if flat.size and (flat.max() >= codebook_size or flat.min() < 0):
        raise ValueError(f"code index outside the codebook of {codebook_size}")
    return np.bincount((flat + np.arange(P) * codebook_size).ravel(), minlength=P * codebook_size)


def code_frequencies(token_arrays: Iterable[np.ndarray], codebook_size: int) -> np.ndarray:
    """Frames ``(F_i, *S)`` of one speaker → float32 ``(prod S, K)``: per position, the share of
    frames using each code (rows sum to 1; a speaker without frames gets uniform rows)."""
    counts: np.ndarray | None = None
    for arr in token_arrays:
        c = position_code_counts(arr, codebook_size)
        counts = c if counts is None else counts + c
    if counts is None:
        raise ValueError("no token frames given")
    freq = counts.reshape(-1, codebook_size).astype(np.float64)
    total = freq.sum(1, keepdims=True)
    freq = np.where(total > 0, freq / np.maximum(total, 1), 1.0 / codebook_size)
    return freq.astype(np.float32)


def speaker_code_frequencies(store: Any, speakers: Iterable[str] | None = None,
                             modalities: Sequence[str] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """``{speaker: {modality: float32 (prod token_shape, K)}}`` over every clip of each speaker in
    ``store`` (a :class:`~vqmae.data.token_store.TokenStore`; labelled or not). Cached on the store."""
    mods = tuple(modalities or store.modalities)
    cache: dict[tuple[str, str], torch.Tensor] = store.__dict__.setdefault("_speaker_refs", {})
    wanted = sorted(set(store.speakers) if speakers is None else set(speakers))
    out: dict[str, dict[str, torch.Tensor]] = {}
    for spk in wanted:
        clips = store.clip_indices([spk]).tolist()
        if not clips:
            raise ValueError(f"{store.root}: no clips of speaker {spk!r}")
        out[spk] = {}
        for m in mods:
            if (spk, m) not in cache:
                cache[(spk, m)] = torch.from_numpy(
                    code_frequencies((store.read(i, m) for i in clips), store.codebook_size(m)))
            out[spk][m] = cache[(spk, m)]
    return out


class SpeakerReferenceDataset(Dataset):
    """A token dataset whose items also carry ``{m}_ref``: the item's speaker's code frequencies
    ``(prod token_shape, K)`` for each of the dataset's modalities. Other attributes (``modalities``,
    ``item_clip``, ``set_epoch``...) are the wrapped dataset's."""

    def __init__(self, dataset: Any, references: Mapping[str, Mapping[str, torch.Tensor]]):
        self.dataset = dataset
        self.references = references
        speakers = dataset.store.speakers
        missing = sorted({speakers[i] for i in set(dataset.item_clip.tolist())} - set(references))
        if missing:
            raise ValueError(f"no speaker reference for speakers {missing[:5]}")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "references"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        ref = self.references[self.dataset.store.speakers[item["clip"]]]
        for m in self.dataset.modalities:
            item[m + REF_SUFFIX] = ref[m]
        return item


def needs_reference(model: Any) -> bool:
    """Whether ``model`` takes per-speaker references (built with ``speaker_norm``)."""
    return bool(getattr(model, "needs_speaker_reference", False))


def with_speaker_reference(dataset: Any, model_or_refs: Any = None) -> Any:
    """``dataset`` with references when ``model_or_refs`` is a model that needs them (or a
    reference mapping); otherwise ``dataset`` unchanged. References come from every clip of
    the dataset's speakers in its store."""
    if isinstance(model_or_refs, Mapping):
        return SpeakerReferenceDataset(dataset, model_or_refs)
    if model_or_refs is not None and not needs_reference(model_or_refs):
        return dataset
    speakers = {dataset.store.speakers[i] for i in set(dataset.item_clip.tolist())}
    refs = speaker_code_frequencies(dataset.store, speakers, dataset.modalities)
    return SpeakerReferenceDataset(dataset, refs)


def reference_inputs(batch: Mapping[str, Any], modalities: Iterable[str], device: Any = None
                     ) -> dict[str, torch.Tensor]:
    """The ``{m}_ref`` entries of ``batch`` for ``modalities`` (moved to ``device``), as keyword
    arguments of a model's forward; empty when the batch has none."""
    out = {}
    for m in modalities:
        ref = batch.get(m + REF_SUFFIX)
        if ref is not None:
            out[m + REF_SUFFIX] = ref.to(device, non_blocking=True) if device is not None else ref
    return out
