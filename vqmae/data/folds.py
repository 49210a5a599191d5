"""Speaker-independent folds: every speaker is tested exactly once; validation speakers for
model selection are carved from each fold's training speakers (never from its test speakers).

Protocols (``make_folds``):

* ``kfold``    seeded shuffle of the speakers, split into ``k`` near-equal groups.
* ``loso``     leave-one-speaker-out (eNTERFACE'05): one group per speaker.
* ``ravdess6`` RAVDESS common protocol: speakers in natural order (Actor_01 .. Actor_24) split
               into 6 consecutive groups of 4 (each group 2 male + 2 female). Seed not used.
* ``cremad5``  CREMA-D: speakers in natural order split into 5 consecutive groups. Seed not used.
* ``split``    a dataset's official split (LRW): speakers named ``train``, ``val``, ``test``; one fold.

Validation (``val_speakers``): ``None`` (default) takes the next group's speakers
(fold ``i`` validates on group ``i + 1 mod k``) for the grouped protocols with 3 or more groups, and
10 % of the training speakers (at least one; none if fewer than 3) for ``loso`` and 2-fold
splits; an int takes that many training speakers, a float in (0, 1) that fraction; those draws are
seeded by ``(seed, fold index)``. ``0`` means no validation set.

``folds.json`` (beside ``manifest.jsonl``)::

    {"format_version": 1,
     "meta": {"protocol": "kfold", "k": 5, "seed": 0, "val_speakers": null, "speakers": [...]},
     "folds": [{"index": 0, "train": [...], "val": [...], "test": [...]}, ...]}
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vqmae.io import read_json, write_json

FOLDS_NAME = "folds.json"
FOLDS_VERSION = 1
PROTOCOLS = ("kfold", "loso", "ravdess6", "cremad5", "split")


class FoldsError(ValueError):
    """Folds that cannot be made, are inconsistent, or differ from the ones on disk."""


@dataclass
class Fold:
    """Speaker ids of one fold (sorted); the three lists are disjoint."""

    index: int
    train: list[str]
    val: list[str]
    test: list[str]

    def split_of(self, speaker: str) -> str | None:
        for name in ("train", "val", "test"):
            if speaker in getattr(self, name):
                return name
        return None


def natural_key(s: str) -> list[Any]:
    """Sort key that orders ``Actor_2`` before ``Actor_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def _groups(speakers: list[str], protocol: str, k: int, seed: int) -> list[list[str]]:
    n = len(speakers)
    if protocol == "kfold":
        if not 2 <= k <= n:
            raise FoldsError(f"kfold needs 2 <= k <= number of speakers ({n}), got k={k}")
        perm = np.random.default_rng(seed).permutation(n)
        return [[speakers[i] for i in part] for part in np.array_split(perm, k)]
    if protocol == "loso":
        if n < 2:
            raise FoldsError(f"leave-one-speaker-out needs at least 2 speakers, got {n}")
        return [[s] for s in speakers]
    if protocol in ("ravdess6", "cremad5"):
        g = 6 if protocol == "ravdess6" else 5
        if n < g:
            raise FoldsError(f"{protocol} needs at least {g} speakers, got {n}")
        return [list(part) for part in np.array_split(np.array(speakers, dtype=object), g)]
    raise FoldsError(f"unknown fold protocol {protocol!r} (choose from {list(PROTOCOLS)})")


def _draw_val(train: list[str], val_speakers: int | float, seed: int, index: int) -> list[str]:
    if isinstance(val_speakers, float) and not isinstance(val_speakers, bool):
        if not 0.0 <= val_speakers < 1.0:
            raise FoldsError(f"val_speakers as a fraction must be in [0, 1), got {val_speakers}")
        n = max(1, int(round(val_speakers * len(train)))) if val_speakers > 0 else 0
    else:
        n = int(val_speakers)
    if n < 0 or n >= len(train):
        raise FoldsError(f"cannot take {n} validation speakers from {len(train)} training speakers "
                         "(at least one must stay for training)")
    rng = np.random.default_rng([seed, index])
    return [train[i] for i in sorted(rng.choice(len(train), size=n, replace=False))] if n else []


def make_folds(speakers: Iterable[str], protocol: str = "kfold", k: int = 5, seed: int = 0,
               val_speakers: int | float | None = None) -> list[Fold]:
    """Speaker-independent folds (see module doc). Deterministic for the same arguments."""
    speakers = sorted({str(s) for s in speakers}, key=natural_key)
    if protocol == "split":
        missing = {"train", "test"} - set(speakers)
        if missing or set(speakers) - {"train", "val", "test"}:
            raise FoldsError(f"protocol 'split' needs speakers named train / val / test, got {speakers[:6]}")
        fold = Fold(0, ["train"], ["val"] if "val" in speakers else [], ["test"])
        check_folds([fold], speakers, every_speaker_tested=False)
        return [fold]
    groups = _groups(speakers, protocol, k, seed)
    folds = []
    for i, test in enumerate(groups):
        rest = [s for j, g in enumerate(groups) if j != i for s in g]
        if val_speakers is None and protocol != "loso" and len(groups) >= 3:
            val = list(groups[(i + 1) % len(groups)])
        else:
            if val_speakers is None:  # default: 10 % (at least one) while two or more train speakers remain
                vs: int | float = 0.1 if len(rest) >= 3 else 0
            else:
                vs = val_speakers
            val = _draw_val(sorted(rest, key=natural_key), vs, seed, i)
        train = [s for s in rest if s not in set(val)]
        folds.append(Fold(i, sorted(train, key=natural_key), sorted(val, key=natural_key),
                          sorted(test, key=natural_key)))
    check_folds(folds, speakers)
    return folds


def check_folds(folds: list[Fold], speakers: Iterable[str] | None = None, every_speaker_tested: bool = True) -> None:
    """Raise :class:`FoldsError` unless train / val / test are disjoint in every fold, and (when
    ``every_speaker_tested``) each speaker is tested exactly once and appears in every fold."""
    tested: dict[str, int] = {}
    for f in folds:
        tr, va, te = set(f.train), set(f.val), set(f.test)
        if tr & va or tr & te or va & te:
            raise FoldsError(f"fold {f.index}: speakers in two splits: {sorted((tr & va) | (tr & te) | (va & te))[:5]}")
        if not tr or not te:
            raise FoldsError(f"fold {f.index}: empty train or test split")
        for s in te:
            tested[s] = tested.get(s, 0) + 1
    if speakers is not None:
        speakers = set(speakers)
        for f in folds:
            have = set(f.train) | set(f.val) | set(f.test)
            if have != speakers:
                raise FoldsError(f"fold {f.index}: speakers differ from the dataset's "
                                 f"(missing {sorted(speakers - have)[:5]}, unknown {sorted(have - speakers)[:5]})")
    if every_speaker_tested:
        twice = sorted(s for s, c in tested.items() if c > 1)
        if twice:
            raise FoldsError(f"speakers tested more than once: {twice[:5]}")
        if speakers is not None and set(tested) != speakers:
            raise FoldsError(f"speakers never tested: {sorted(speakers - set(tested))[:5]}")


def write_folds(path: str | Path, folds: list[Fold], meta: dict[str, Any]) -> Path:
    """Write ``folds.json`` (atomically). ``path`` may be the file or its folder."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".json":
        path = path / FOLDS_NAME
    return write_json(path, {"format_version": FOLDS_VERSION, "meta": dict(meta),
                             "folds": [asdict(f) for f in folds]})


def _folds_file(path: str | Path) -> Path:
    path = Path(path)
    return path / FOLDS_NAME if path.is_dir() else path


def read_folds_meta(path: str | Path) -> dict[str, Any]:
    path = _folds_file(path)
    data = read_json(path)
    version = data.get("format_version")
    if version != FOLDS_VERSION:
        raise FoldsError(f"{path}: unknown folds format version {version} (this vqmae reads {FOLDS_VERSION})")
    return dict(data.get("meta", {}))


def read_folds(path: str | Path) -> list[Fold]:
    """Read ``folds.json`` (the file or its folder)."""
    path = _folds_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"folds file not found: {path}")
    read_folds_meta(path)
    data = read_json(path)
    try:
        return [Fold(int(f["index"]), list(f["train"]), list(f["val"]), list(f["test"])) for f in data["folds"]]
    except (KeyError, TypeError) as e:
        raise FoldsError(f"{path}: malformed fold entry ({e})") from None


def folds_meta(speakers: Iterable[str], protocol: str, k: int, seed: int,
               val_speakers: int | float | None) -> dict[str, Any]:
    """The settings that define a set of folds (stored in folds.json and compared on reuse)."""
    return {"protocol": protocol, "k": k if protocol == "kfold" else None,
            "seed": seed if protocol in ("kfold", "loso") or val_speakers not in (None, 0) else None,
            "val_speakers": val_speakers,
            "speakers": sorted({str(s) for s in speakers}, key=natural_key)}


def load_or_make_folds(path: str | Path, speakers: Iterable[str], protocol: str = "kfold", k: int = 5,
                       seed: int = 0, val_speakers: int | float | None = None,
                       refold: bool = False) -> tuple[list[Fold], bool]:
    """Reuse ``folds.json`` when it was made with the same settings and speakers; make and write it
    when absent (or ``refold``). Different settings raise :class:`FoldsError` (never silently
    recomputed). Returns ``(folds, created)``."""
    path = _folds_file(path)
    speakers = list(speakers)
    meta = folds_meta(speakers, protocol, k, seed, val_speakers)
    if path.is_file() and not refold:
        old = read_folds_meta(path)
        diffs = [f"{key}: on disk {_short(old.get(key))}, asked {_short(meta[key])}"
                 for key in meta if old.get(key) != meta[key]]
        if diffs:
            raise FoldsError(f"{path} was made with other settings ({'; '.join(diffs)}). Use the same "
                             "settings, or pass --refold to recompute the folds (results made with the "
                             "old folds are then not comparable).")
        folds = read_folds(path)
        check_folds(folds, speakers, every_speaker_tested=protocol != "split")
        return folds, False
    folds = make_folds(speakers, protocol=protocol, k=k, seed=seed, val_speakers=val_speakers)
    write_folds(path, folds, meta)
    return folds, True


def _short(v: Any) -> str:
    if isinstance(v, list) and len(v) > 6:
        return f"[{len(v)} items: {', '.join(map(str, v[:3]))}, ...]"
    return repr(v)
