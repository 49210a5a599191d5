"""Dataset adapters: a dataset folder in its published layout -> manifest rows (``ClipRecord``).

An adapter only reads names and folders (no decoding); ``vqmae.data.prepare`` probes each
file, fills ``duration`` / ``fps`` / ``sample_rate`` and drops bad files into ``errors.jsonl``.
Layouts (each dataset's published naming; docs/DATA.md):

=============  ===========================================  ======================  ==========
name           layout                                       speaker                 label
=============  ===========================================  ======================  ==========
ravdess        ``Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4``        ``Actor_AA``            EE − 1 (8)
crema-d        ``[VideoFlash/]ID_SENT_EMO_LEVEL.flv``       actor id (``1001``)     EMO (6)
enterface      ``subject N/emotion/[sentence K/]*.avi``     ``subject_N``           folder (6)
voxceleb2      ``{dev,test}/mp4/idXXXXX/<yt id>/NNNNN.mp4``  ``idXXXXX``             none
lrw            ``WORD/{train,val,test}/WORD_NNNNN.mp4``     split name (see below)  word
csv            any; a CSV with path, speaker, label and/or arousal, valence columns
synthetic      the synthetic corpus folder (manifest.jsonl + dataset.json)
=============  ===========================================  ======================  ==========

RAVDESS keeps audio-video (MM 01) speech (VV 01) clips; video-only, audio-only and song files
are *skipped* (listed, not errors). LRW has no speaker ids: its speaker field holds the official
split (``train`` / ``val`` / ``test``) and its fold protocol is ``split``.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqmae.data.manifest import ClipRecord

VIDEO_SUFFIXES = (".mp4", ".avi", ".flv", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")

RAVDESS_CLASSES = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
CREMAD_CODES = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CREMAD_CLASSES = list(CREMAD_CODES.values())
ENTERFACE_CLASSES = ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]


@dataclass
class AdapterResult:
    """What an adapter found under ``root``."""

    name: str
    root: Path
    classes: list[str]
    records: list[ClipRecord]
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Files that are not clips of this dataset's task (e.g. RAVDESS songs): ``{file, reason}``."""
    errors: list[dict[str, str]] = field(default_factory=list)
    """Files that should be clips but cannot be indexed: ``{file, kind, reason}`` (errors.jsonl)."""


@dataclass(frozen=True)
class Adapter:
    name: str
    fn: Callable[..., AdapterResult]
    face_centred: bool
    """True: frames are already face-centred (skip detection, centre crop)."""
    protocol: str
    """Default fold protocol (vqmae.data.folds)."""
    description: str


def _media_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _err(path: Path, root: Path, reason: str, kind: str = "name") -> dict[str, str]:
    return {"file": _rel(path, root), "kind": kind, "reason": reason}


def _check_root(root: str | Path) -> Path:
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root is not a folder: {root}")
    return root


def _dedupe_ids(records: list[ClipRecord]) -> list[ClipRecord]:
    """Where two clips share an id, use their relative paths (``/`` -> ``__``) instead."""
    seen: dict[str, int] = {}
    for r in records:
        seen[r.id] = seen.get(r.id, 0) + 1
    for r in records:
        if seen[r.id] > 1:
            r.id = re.sub(r"[\s/\\]+", "__", str(Path(r.path).with_suffix("")))
    return records


# --------------------------------------------------------------------------------- RAVDESS

_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def ravdess(root: str | Path, include_song: bool = False) -> AdapterResult:
    """RAVDESS: audio-video speech clips; class = emotion code − 1; speaker = ``Actor_AA``."""
    root = _check_root(root)
    res = AdapterResult("ravdess", root, list(RAVDESS_CLASSES), [])
    for p in _media_files(root) + sorted(root.rglob("*.wav")):
        m = _RAVDESS.match(p.stem)
        if not m:
            res.errors.append(_err(p, root, "file name does not follow RAVDESS MM-VV-EE-II-SS-RR-AA"))
            continue
        modality, channel, emo, intensity, statement, rep, actor = (int(g) for g in m.groups())
        if modality != 1:
            res.skipped.append({"file": _rel(p, root), "reason": {2: "video only", 3: "audio only"}.get(modality, f"modality {modality:02d}")})
            continue
        if channel == 2 and not include_song:
            res.skipped.append({"file": _rel(p, root), "reason": "song (vocal channel 02)"})
            continue
        if not 1 <= emo <= 8 or intensity not in (1, 2) or not 1 <= actor <= 99:
            res.errors.append(_err(p, root, f"RAVDESS codes out of range (emotion {emo:02d}, intensity {intensity:02d})"))
            continue
        res.records.append(ClipRecord(id=p.stem, path=_rel(p, root), speaker=f"Actor_{actor:02d}", label=emo - 1,
                                      label_name=RAVDESS_CLASSES[emo - 1], dataset="ravdess"))
    res.records = _dedupe_ids(res.records)
    return res


# --------------------------------------------------------------------------------- CREMA-D

_CREMAD = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$")


def cremad(root: str | Path) -> AdapterResult:
    """CREMA-D: ``ActorID_Sentence_EMO_Level`` video files (``VideoFlash/*.flv``, or converted mp4)."""
    root = _check_root(root)
    res = AdapterResult("crema-d", root, list(CREMAD_CLASSES), [])
    base = root / "VideoFlash" if (root / "VideoFlash").is_dir() else root
    for p in _media_files(base):
        m = _CREMAD.match(p.stem)
        if not m or m.group(3) not in CREMAD_CODES:
            res.errors.append(_err(p, root, "file name does not follow CREMA-D ActorID_Sentence_EMO_Level "
                                            f"(EMO one of {sorted(CREMAD_CODES)})"))
            continue
        actor, _sentence, emo, _level = m.groups()
        name = CREMAD_CODES[emo]
        res.records.append(ClipRecord(id=p.stem, path=_rel(p, root), speaker=actor, label=CREMAD_CLASSES.index(name),
                                      label_name=name, dataset="crema-d"))
    res.records = _dedupe_ids(res.records)
    return res


# ------------------------------------------------------------------------------ eNTERFACE'05

_SUBJECT = re.compile(r"^subject[\s_-]*(\d+)$", re.IGNORECASE)


def enterface(root: str | Path) -> AdapterResult:
    """eNTERFACE'05: ``subject N/<emotion>/[sentence K/]*.avi``; emotion from the folder name."""
    root = _check_root(root)
    res = AdapterResult("enterface", root, list(ENTERFACE_CLASSES), [])
    for p in _media_files(root):
        parts = p.relative_to(root).parts
        m = _SUBJECT.match(parts[0]) if len(parts) > 1 else None
        emos = [q.lower() for q in parts[1:-1] if q.lower() in ENTERFACE_CLASSES]
        if not m or len(emos) != 1:
            res.errors.append(_err(p, root, "path does not follow eNTERFACE'05 'subject N/<emotion>/[sentence K/]file' "
                                            f"(emotion one of {ENTERFACE_CLASSES})"))
            continue
        res.records.append(ClipRecord(id=p.stem, path=_rel(p, root), speaker=f"subject_{int(m.group(1)):02d}",
                                      label=ENTERFACE_CLASSES.index(emos[0]), label_name=emos[0], dataset="enterface"))
    res.records = _dedupe_ids(res.records)
    return res


# ------------------------------------------------------------------------------- VoxCeleb2

_VOXID = re.compile(r"^id\d+$")


def voxceleb2(root: str | Path) -> AdapterResult:
    """VoxCeleb2: ``[dev|test]/mp4/idXXXXX/<youtube id>/NNNNN.mp4``; unlabelled, face-centred."""
    root = _check_root(root)
    res = AdapterResult("voxceleb2", root, [], [])
    for p in _media_files(root):
        parts = p.relative_to(root).parts
        if len(parts) < 3 or not _VOXID.match(parts[-3]):
            res.errors.append(_err(p, root, "path does not follow VoxCeleb2 '.../idXXXXX/<youtube id>/NNNNN.mp4'"))
            continue
        spk, yt = parts[-3], parts[-2]
        res.records.append(ClipRecord(id=f"{spk}_{yt}_{p.stem}", path=_rel(p, root), speaker=spk, dataset="voxceleb2"))
    res.records = _dedupe_ids(res.records)
    return res


# ------------------------------------------------------------------------------------- LRW

_LRW_SPLITS = ("train", "val", "test")


def lrw(root: str | Path) -> AdapterResult:
    """LRW: ``WORD/{train,val,test}/WORD_NNNNN.mp4``; label = word (classes sorted); speaker = split."""
    root = _check_root(root)
    found: list[tuple[Path, str, str]] = []
    res = AdapterResult("lrw", root, [], [])
    for p in _media_files(root):
        parts = p.relative_to(root).parts
        if len(parts) != 3 or parts[1] not in _LRW_SPLITS or not p.stem.startswith(parts[0] + "_"):
            res.errors.append(_err(p, root, "path does not follow LRW 'WORD/{train,val,test}/WORD_NNNNN.mp4'"))
            continue
        found.append((p, parts[0], parts[1]))
    res.classes = sorted({w for _, w, _ in found})
    for p, word, split in found:
        res.records.append(ClipRecord(id=f"{p.stem}_{split}", path=_rel(p, root), speaker=split,
                                      label=res.classes.index(word), label_name=word, dataset="lrw"))
    return res


# ------------------------------------------------------------------------------------- CSV


def _num(value: str | None) -> float | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def generic_csv(root: str | Path, csv_file: str = "", classes: list[str] | None = None) -> AdapterResult:
    """A CSV (default ``<root>/labels.csv``, or the only ``*.csv`` in root) with columns ``path``
    (relative to root), ``speaker`` and ``label`` (class name or index) and/or ``arousal`` /
    ``valence``; optional ``id``. Classes: ``classes`` if given, else the sorted label names
    (or ``0 .. max`` when every label is an integer)."""
    root = _check_root(root)
    if csv_file:
        table = Path(csv_file) if Path(csv_file).is_absolute() else root / csv_file
    elif (root / "labels.csv").is_file():
        table = root / "labels.csv"
    else:
        found = sorted(root.glob("*.csv"))
        if len(found) != 1:
            raise FileNotFoundError(f"{root}: give csv_file= (found {len(found)} CSV files at the top level)")
        table = found[0]
    with open(table, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    res = AdapterResult("csv", root, [], [])
    if not rows:
        return res
    cols = set(rows[0])
    need = {"path", "speaker"} - cols
    if need or not ({"label"} & cols or {"arousal", "valence"} & cols):
        raise ValueError(f"{table}: needs columns path, speaker and label and/or arousal, valence (has {sorted(cols)})")
    labels = [(r.get("label") or "").strip() for r in rows]
    if classes:
        res.classes = list(classes)
    elif any(labels):
        given = [x for x in labels if x]
        res.classes = ([str(i) for i in range(max(int(x) for x in given) + 1)]
                       if all(x.isdigit() for x in given) else sorted(set(given)))
    for n, (row, lab) in enumerate(zip(rows, labels), start=2):
        rel = (row.get("path") or "").strip()
        spk = (row.get("speaker") or "").strip()
        where = f"{table.name} line {n}"
        if not rel or not spk:
            res.errors.append({"file": rel or where, "kind": "name", "reason": f"{where}: empty path or speaker"})
            continue
        label = label_name = None
        if lab:
            if lab in res.classes:
                label = res.classes.index(lab)
            elif lab.isdigit() and int(lab) < len(res.classes):
                label = int(lab)
            else:
                res.errors.append({"file": rel, "kind": "name", "reason": f"{where}: label {lab!r} not in classes {res.classes}"})
                continue
            label_name = res.classes[label]
        targets: dict[str, Any] = {}
        for key in ("arousal", "valence"):
            v = _num(row.get(key))
            if v is not None:
                targets[key] = v
        cid = (row.get("id") or "").strip() or re.sub(r"[\s/\\]+", "__", str(Path(rel).with_suffix("")))
        res.records.append(ClipRecord(id=cid, path=Path(rel).as_posix(), speaker=spk, label=label,
                                      label_name=label_name, targets=targets, dataset="csv"))
    return res


# ------------------------------------------------------------------------------- synthetic


def synthetic(root: str | Path) -> AdapterResult:
    """The synthetic corpus (``vqmae synth``): its manifest.jsonl + dataset.json are read as they
    are; files are re-checked by ``prepare`` like any other."""
    from vqmae.data.manifest import read_manifest

    root = _check_root(root)
    man = read_manifest(root)
    res = AdapterResult(man.name or "synthetic", man.root, list(man.classes), [])
    for r in man.records:
        r.dataset = r.dataset or "synthetic"
        res.records.append(r)
    return res


ADAPTERS: dict[str, Adapter] = {
    "ravdess": Adapter("ravdess", ravdess, False, "ravdess6", "RAVDESS audio-video speech, 8 emotions, 24 actors"),
    "crema-d": Adapter("crema-d", cremad, False, "cremad5", "CREMA-D, 6 emotions, 91 actors"),
    "enterface": Adapter("enterface", enterface, False, "loso", "eNTERFACE'05, 6 emotions, 44 subjects"),
    "voxceleb2": Adapter("voxceleb2", voxceleb2, True, "none", "VoxCeleb2 (unlabelled, face-centred)"),
    "lrw": Adapter("lrw", lrw, True, "split", "LRW word recognition, official train/val/test split"),
    "csv": Adapter("csv", generic_csv, False, "kfold", "any folder + a CSV of path, speaker, label / arousal, valence"),
    "synthetic": Adapter("synthetic", synthetic, True, "kfold", "the synthetic corpus (vqmae synth)"),
}
ALIASES = {"cremad": "crema-d", "crema_d": "crema-d", "enterface05": "enterface", "vox2": "voxceleb2",
           "voxceleb": "voxceleb2", "synth": "synthetic"}


def get_adapter(name: str) -> Adapter:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in ADAPTERS:
        import difflib

        close = difflib.get_close_matches(key, list(ADAPTERS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown dataset {name!r} (choose from {sorted(ADAPTERS)}).{hint}")
    return ADAPTERS[key]


def scan(name: str, root: str | Path, **options: Any) -> AdapterResult:
    """Run the adapter ``name`` on ``root`` with adapter ``options`` (e.g. ``csv_file``)."""
    return get_adapter(name).fn(root, **options)
