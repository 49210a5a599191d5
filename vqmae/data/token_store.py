"""The token store: tokens of a whole dataset on disk, read by memory map (spec: docs/DATA.md, "Token store format").

Layout of a store folder (format version 1)::

    STORE/store.json             format, version, modalities, classes, provenance, shard checksums
    STORE/index.jsonl            one row per stored clip, in manifest order
    STORE/errors.jsonl           clips that could not be tokenized (id, file, reason)
    STORE/audio/shard-000000.npy  uint16 (frames, *token_shape): the clips of part 0, concatenated
    STORE/visual/shard-000000.npy
    STORE/parts/part-000000.json  what the tokenize job wrote for part 0 (rows, errors, checksums)
    STORE/plan.json              what the job was asked to do (manifest hash, tokenizers, part size)

Reading::

    store = TokenStore.open("out/tokens")          # StoreError on unknown versions / unfinished stores
    store.check_tokenizer("visual", model_cfg["visual_fingerprint"])
    codes = store.read("spk01_s03", "visual")      # uint16 (T, 24, 24), memory-mapped

Aligned training windows over a store: :class:`vqmae.data.token_dataset.TokenDataset`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vqmae import __version__

# ------------------------------------------------------------------------------ format spec

STORE_FORMAT = "vqmae-token-store"
STORE_FORMAT_VERSION = 1
STORE_JSON = "store.json"
INDEX_NAME = "index.jsonl"
ERRORS_NAME = "errors.jsonl"
PLAN_NAME = "plan.json"
PARTS_DIR = "parts"
TOKEN_DTYPE = np.dtype("<u2")
"""Tokens on disk: little-endian uint16 (codebooks up to 65,536 codes)."""
TARGET_NAMES = ("arousal", "valence")
"""Order of the continuous targets in ``item["targets"]``."""


def shard_name(part: int) -> str:
    return f"shard-{part:06d}.npy"


def part_name(part: int) -> str:
    return f"part-{part:06d}.json"


def shard_path(root: str | Path, modality: str, part: int) -> Path:
    return Path(root) / modality / shard_name(part)


def part_path(root: str | Path, part: int) -> Path:
    return Path(root) / PARTS_DIR / part_name(part)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


class StoreError(ValueError):
    """A token store that cannot be used: unknown version, unfinished, other tokenizer, corrupt."""


# ----------------------------------------------------------------------------------- index


@dataclass
class StoredClip:
    """One row of ``index.jsonl``."""

    id: str
    speaker: str
    label: int | None = None
    label_name: str | None = None
    targets: dict[str, Any] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    """Token frames per modality, e.g. {"audio": 100, "visual": 50}."""
    shard: int = 0
    """Shard number (the same for every modality)."""
    offset: dict[str, int] = field(default_factory=dict)
    """First frame of the clip inside its shard, per modality."""
    path: str = ""
    """Media file, relative to the dataset root (as in the manifest)."""
    dataset: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "speaker": self.speaker, "label": self.label,
                "label_name": self.label_name, "targets": self.targets, "frames": self.frames,
                "shard": self.shard, "offset": self.offset, "path": self.path,
                "dataset": self.dataset}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StoredClip:
        return cls(id=d["id"], speaker=d.get("speaker", ""), label=d.get("label"),
                   label_name=d.get("label_name"), targets=d.get("targets") or {},
                   frames=d["frames"], shard=d["shard"], offset=d["offset"],
                   path=d.get("path", ""), dataset=d.get("dataset", ""))


def _index_rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise StoreError(f"{path}:{n}: broken index row ({e.msg})") from None


def check_format_version(meta: dict[str, Any], where: Path) -> None:
    version = meta.get("format_version")
    if meta.get("format") != STORE_FORMAT or version != STORE_FORMAT_VERSION:
        raise StoreError(
            f"{where}: token store format {meta.get('format')!r} version {version!r} is not "
            f"readable by vqmae {__version__}, which reads {STORE_FORMAT!r} version "
            f"{STORE_FORMAT_VERSION}; re-tokenize with this version (vqmae tokenize) or use the "
            f"vqmae version that wrote it ({meta.get('vqmae_version', 'unknown')})"
        )


# ----------------------------------------------------------------------------------- store


class TokenStore:
    """A finished token store, opened read-only. Cheap to pickle (memmaps reopen lazily).

    The index is held as columns (numpy arrays and lists of strings), not as one Python object
    per clip: DataLoader workers forked from a process holding a million-clip store then share
    its pages instead of copying them. ``store.clips`` (one :class:`StoredClip` per clip, with
    every manifest field) is built on first use.
    """

    def __init__(self, root: Path, meta: dict[str, Any], rows: Iterable[dict[str, Any]]):
        self.root = root
        self.meta = meta
        self.modalities: list[str] = list(meta["modalities"])
        self.classes: list[str] = list(meta.get("classes", []))
        self.provenance: dict[str, dict[str, Any]] = meta["provenance"]
        ids, speakers, labels, targets, shard = [], [], [], [], []
        offset: dict[str, list[int]] = {m: [] for m in self.modalities}
        frames: dict[str, list[int]] = {m: [] for m in self.modalities}
        for r in rows:
            ids.append(r["id"])
            speakers.append(r.get("speaker", ""))
            labels.append(-1 if r.get("label") is None else int(r["label"]))
            t = r.get("targets") or {}
            targets.append([_float(t.get(k)) for k in TARGET_NAMES])
            shard.append(r["shard"])
            for m in self.modalities:
                offset[m].append(r["offset"][m])
                frames[m].append(r["frames"][m])
        self.ids: list[str] = ids
        """Clip ids, in store order (= manifest order)."""
        self.speakers: list[str] = speakers
        self.labels = np.array(labels, dtype=np.int64)
        """int64 (num_clips,): class index, -1 when unlabelled."""
        self.targets = np.array(targets, dtype=np.float32).reshape(-1, len(TARGET_NAMES))
        """float32 (num_clips, 2): [arousal, valence], nan when absent."""
        self._shard = np.array(shard, dtype=np.int64)
        self._offset = {m: np.array(v, dtype=np.int64) for m, v in offset.items()}
        self._frames = {m: np.array(v, dtype=np.int64) for m, v in frames.items()}
        self._id_to_index: dict[str, int] | None = None
        self._clips: list[StoredClip] | None = None
        self._maps: dict[tuple[str, int], np.ndarray] = {}
        self._loc: dict[str, tuple[list[int], list[int]]] = {}
        self._maps_pid = os.getpid()

    # -- opening
    @classmethod
    def open(cls, path: str | Path, fingerprints: dict[str, str] | None = None) -> TokenStore:
        """Open a finished store. ``fingerprints`` ({modality: fingerprint}) are checked at once."""
        root = Path(path)
        meta_path = root / STORE_JSON
        if not meta_path.is_file():
            if (root / PLAN_NAME).is_file():
                n_parts = len(list((root / PARTS_DIR).glob("part-*.json")))
                raise StoreError(
                    f"{root}: token store is unfinished ({n_parts} parts done, no {STORE_JSON}); "
                    "rerun the same `vqmae tokenize` command to finish it"
                )
            raise StoreError(f"{root}: not a token store (no {STORE_JSON})")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise StoreError(f"{meta_path}: not valid JSON ({e.msg})") from None
        check_format_version(meta, meta_path)
        try:
            store = cls(root, meta, _index_rows(root / INDEX_NAME))
        except FileNotFoundError:
            raise StoreError(f"{root}: {INDEX_NAME} is missing") from None
        except KeyError as e:
            raise StoreError(f"{root / INDEX_NAME}: index rows lack {e}") from None
        if len(store) != meta["num_clips"]:
            raise StoreError(f"{root}: index has {len(store)} rows, store.json says {meta['num_clips']}")
        for modality, fp in (fingerprints or {}).items():
            store.check_tokenizer(modality, fp)
        return store

    @property
    def clips(self) -> list[StoredClip]:
        """One :class:`StoredClip` per clip (every index field; read from index.jsonl on first use)."""
        if self._clips is None:
            self._clips = [StoredClip.from_dict(r) for r in _index_rows(self.root / INDEX_NAME)]
        return self._clips

    def clip_indices(self, speakers: Iterable[str] | None = None, labelled: bool = False) -> np.ndarray:
        """int64: indices of the clips of ``speakers`` (None = all), optionally only labelled ones."""
        keep = np.ones(len(self), dtype=bool)
        if speakers is not None:
            wanted = set(speakers)
            keep &= np.fromiter((s in wanted for s in self.speakers), dtype=bool, count=len(self))
        if labelled:
            keep &= self.labels >= 0
        return np.flatnonzero(keep)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"TokenStore({str(self.root)!r}, clips={len(self)}, modalities={self.modalities})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_maps"], state["_clips"] = {}, None
        return state

    # -- facts
    def check_tokenizer(self, modality: str, fingerprint: str) -> None:
        """Raise :class:`StoreError` unless ``modality`` was tokenized by the tokenizer ``fingerprint``."""
        if modality not in self.provenance:
            raise StoreError(f"{self.root}: holds no '{modality}' tokens (modalities: {self.modalities})")
        have = self.provenance[modality]["fingerprint"]
        if have != fingerprint:
            raise StoreError(
                f"{self.root}: '{modality}' tokens were made by tokenizer {have[:16]}…, but the model "
                f"expects tokenizer {fingerprint[:16]}… (store fingerprint {have}, model fingerprint "
                f"{fingerprint}); re-tokenize with the model's tokenizer or use its own store"
            )

    def token_shape(self, modality: str) -> tuple[int, ...]:
        return tuple(self.provenance[modality]["token_shape"])

    def codebook_size(self, modality: str) -> int:
        return int(self.provenance[modality]["codebook_size"])

    def frames_per_second(self, modality: str) -> float:
        return float(self.provenance[modality]["frames_per_second"])

    def index_of(self, i_or_id: int | str) -> int:
        """Index into the store of a clip id (or an index, checked)."""
        if isinstance(i_or_id, str):
            if self._id_to_index is None:
                self._id_to_index = {c: i for i, c in enumerate(self.ids)}
            try:
                return self._id_to_index[i_or_id]
            except KeyError:
                raise KeyError(f"{self.root}: no clip '{i_or_id}'") from None
        i = int(i_or_id)
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.root}: clip index {i} out of range ({len(self)} clips)")
        return i % len(self)

    def frames(self, modality: str) -> np.ndarray:
        """int64 (num_clips,): token frames of every clip."""
        return self._frames[modality]

    # -- reading
    def _map(self, modality: str, shard: int) -> np.ndarray:
        if self._maps_pid != os.getpid():  # forked DataLoader worker: own maps
            self._maps, self._maps_pid = {}, os.getpid()
        key = (modality, shard)
        m = self._maps.get(key)
        if m is None:
            if len(self._maps) >= 256:  # bound open files
                self._maps.clear()
            path = shard_path(self.root, modality, shard)
            try:
                m = np.load(path, mmap_mode="r").view(np.ndarray)  # plain view: cheaper slicing
            except FileNotFoundError:
                raise StoreError(f"{path}: shard missing (run `vqmae tokens verify {self.root}`)") from None
            self._maps[key] = m
        return m

    def read(self, i_or_id: int | str, modality: str) -> np.ndarray:
        """uint16 (T, *token_shape): all tokens of one clip, memory-mapped (read-only)."""
        i = self.index_of(i_or_id)
        if modality not in self._offset:
            raise StoreError(f"{self.root}: holds no '{modality}' tokens (modalities: {self.modalities})")
        off = int(self._offset[modality][i])
        return self._map(modality, int(self._shard[i]))[off:off + int(self._frames[modality][i])]

    def read_frames(self, i: int, modality: str, start: int, stop: int) -> np.ndarray:
        """uint16 (stop - start, *token_shape): frames [start, stop) of clip ``i`` (no bounds check)."""
        loc = self._loc.get(modality)
        if loc is None:  # python lists: the fastest scalar lookups in the per-item hot path
            loc = self._loc[modality] = (self._shard.tolist(), self._offset[modality].tolist())
        off = loc[1][i]
        return self._map(modality, loc[0][i])[off + start:off + stop]

    def verify(self, checksums: bool = True) -> list[str]:
        """Problems found (empty list = fine). See :func:`verify_store`."""
        return verify_store(self.root, checksums=checksums)


# ---------------------------------------------------------------------------------- verify


def verify_store(path: str | Path, checksums: bool = True) -> list[str]:
    """Check a store folder: version, index ↔ shards consistency, shapes, token range, checksums.

    Returns one line per problem (empty when the store is sound). Never raises on bad data.
    """
    root = Path(path)
    try:
        store = TokenStore.open(root)
    except (StoreError, OSError, KeyError, TypeError) as e:
        return [str(e)]
    try:
        return _verify(store, root, checksums)
    except (KeyError, TypeError, ValueError) as e:
        return [f"{root / STORE_JSON}: malformed ({type(e).__name__}: {e})"]


def _verify(store: TokenStore, root: Path, checksums: bool) -> list[str]:
    problems: list[str] = []
    meta = store.meta
    if checksums and "index_sha256" in meta and sha256_file(root / INDEX_NAME) != meta["index_sha256"]:
        problems.append(f"{root / INDEX_NAME}: checksum differs from store.json")
    ids = [c.id for c in store.clips]
    if len(set(ids)) != len(ids):
        problems.append(f"{root / INDEX_NAME}: duplicate clip ids")
    # expected frames per shard from the index (clips of a shard are contiguous, in order)
    by_shard: dict[int, list[int]] = {}
    for i, c in enumerate(store.clips):
        by_shard.setdefault(c.shard, []).append(i)
    for m in store.modalities:
        prov = store.provenance[m]
        shape = tuple(prov["token_shape"])
        K = int(prov["codebook_size"])
        for rec in meta["shards"][m]:
            part, fname = int(rec["part"]), rec["file"]
            p = root / m / fname
            if not p.is_file():
                problems.append(f"{p}: missing")
                continue
            if p.stat().st_size != rec["bytes"]:
                problems.append(f"{p}: {p.stat().st_size} bytes, store.json says {rec['bytes']}")
                continue
            if checksums and sha256_file(p) != rec["sha256"]:
                problems.append(f"{p}: checksum differs from store.json (corrupted)")
                continue
            try:
                arr = np.load(p, mmap_mode="r")
            except (ValueError, OSError) as e:
                problems.append(f"{p}: unreadable ({e})")
                continue
            if arr.dtype != TOKEN_DTYPE or tuple(arr.shape[1:]) != shape or arr.shape[0] != rec["frames"]:
                problems.append(f"{p}: {arr.dtype} {tuple(arr.shape)}, expected uint16 "
                                f"({rec['frames']}, {', '.join(map(str, shape))})")
                continue
            expect = 0
            for i in by_shard.get(part, []):
                c = store.clips[i]
                if c.offset[m] != expect:
                    problems.append(f"{root / INDEX_NAME}: clip '{c.id}' {m} offset {c.offset[m]}, expected {expect}")
                expect = c.offset[m] + c.frames[m]
            if expect != arr.shape[0]:
                problems.append(f"{p}: holds {arr.shape[0]} frames, the index accounts for {expect}")
            if checksums and arr.size and int(arr.max()) >= K:
                problems.append(f"{p}: token {int(arr.max())} outside the codebook (size {K})")
        listed = {int(r["part"]) for r in meta["shards"][m]}
        missing = sorted(set(by_shard) - listed)
        if missing:
            problems.append(f"{root}: index refers to {m} shards {missing[:5]} that store.json does not list")
    stray = [p.name for p in root.rglob(".*.tmp")]
    if stray:
        problems.append(f"{root}: leftover temporary files {stray[:3]} (rerun vqmae tokenize to clean up)")
    return problems


def _float(v: Any) -> float:
    try:
        return float("nan") if v is None else float(v)
    except (TypeError, ValueError):
        return float("nan")
