"""A token store held in memory, read through the ordinary :class:`TokenStore` / :class:`TokenDataset`
code, so windows of noisy re-tokenized clips and of media files given to ``predict`` are cut
exactly as in the fine-tuning protocol.

* :meth:`MemoryTokenStore.from_arrays`: tokens of a few clips (``vqmae predict``).
* :meth:`MemoryTokenStore.overlay`: a store whose tokens of one modality are replaced for some
  clips (noise robustness: noisy audio tokens, clean visual tokens from the store on disk).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vqmae.data.token_store import StoredClip, StoreError, TokenStore


class MemoryTokenStore(TokenStore):
    """``TokenStore`` whose clip ``i`` is "shard" ``i`` (offset 0), kept as in-memory arrays."""

    def __init__(self, root: Path, meta: dict[str, Any], clips: list[StoredClip],
                 arrays: dict[tuple[str, int], np.ndarray]):
        super().__init__(root, meta, [c.to_dict() for c in clips])
        self._clips = list(clips)  # the index lives here, not in an index.jsonl
        self._arrays = arrays

    def _map(self, modality: str, shard: int) -> np.ndarray:
        return self._arrays[(modality, shard)]

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)  # keep the in-memory index and arrays (DataLoader workers)

    @classmethod
    def from_arrays(cls, clips: Sequence[Mapping[str, Any]], tokens: Sequence[Mapping[str, np.ndarray]],
                    provenance: Mapping[str, Mapping[str, Any]], classes: Sequence[str] = (),
                    name: str = "<memory>") -> MemoryTokenStore:
        """``clips[i]``: index-row facts (``id``, ``speaker``, ``label``, ``targets``, ``path``);
        ``tokens[i]``: ``{modality: (T_m, *token_shape)}`` integer arrays."""
        modalities = list(provenance)
        rows, arrays = [], {}
        for i, (c, t) in enumerate(zip(clips, tokens)):
            missing = [m for m in modalities if m not in t]
            if missing:
                raise StoreError(f"clip {c.get('id', i)}: no {missing} tokens")
            for m in modalities:
                a = np.asarray(t[m])
                want = tuple(provenance[m]["token_shape"])
                if tuple(a.shape[1:]) != want:
                    raise StoreError(f"clip {c.get('id', i)}: {m} tokens {a.shape}, expected (T, {want})")
                arrays[(m, i)] = a
            rows.append(StoredClip(
                id=str(c.get("id", i)), speaker=str(c.get("speaker", "")), label=c.get("label"),
                label_name=c.get("label_name"), targets=dict(c.get("targets") or {}),
                frames={m: int(arrays[(m, i)].shape[0]) for m in modalities}, shard=i,
                offset={m: 0 for m in modalities}, path=str(c.get("path", "")),
                dataset=str(c.get("dataset", ""))))
        meta = {"modalities": modalities, "classes": list(classes),
                "provenance": {m: dict(p) for m, p in provenance.items()}, "num_clips": len(rows)}
        return cls(Path(name), meta, rows, arrays)

    @classmethod
    def overlay(cls, base: TokenStore, replace: Mapping[str, Mapping[int, np.ndarray]],
                provenance: Mapping[str, Mapping[str, Any]] | None = None,
                clip_ids: Sequence[int] | None = None) -> MemoryTokenStore:
        """The clips ``clip_ids`` of ``base`` (default: every clip in ``replace``) with the tokens
        ``replace[modality][clip index]`` instead of the stored ones (same frame counts). Clip indices
        of the result are positions in ``clip_ids``; ``clip.id`` stays the same."""
        if clip_ids is None:
            clip_ids = sorted({i for r in replace.values() for i in r})
        clips, tokens = [], []
        for i in clip_ids:
            c = base.clips[i]
            t = {}
            for m in base.modalities:
                if m in replace and i in replace[m]:
                    a = np.asarray(replace[m][i])
                    if a.shape[0] != c.frames[m]:
                        raise StoreError(f"clip {c.id}: {a.shape[0]} replacement {m} frames, the store has "
                                         f"{c.frames[m]}")
                    t[m] = a
                else:
                    t[m] = base.read(i, m)
            clips.append(c.to_dict())
            tokens.append(t)
        prov = {m: dict(base.provenance[m]) for m in base.modalities}
        for m, p in (provenance or {}).items():
            prov[m] = dict(p)
        store = cls.from_arrays(clips, tokens, prov, base.classes, name=f"{base.root}+overlay")
        store.meta.update({k: v for k, v in base.meta.items() if k not in store.meta})
        return store
