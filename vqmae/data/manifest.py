"""The manifest: one JSON line per clip, the contract between ingestion and every later stage.

``manifest.jsonl`` rows (see docs/DATA.md)::

    {"id": "spk03_s02_angry_strong", "path": "clips/spk03/....mp4", "speaker": "spk03",
     "label": 3, "label_name": "angry", "targets": {"arousal": 0.7, "valence": -0.5},
     "duration": 2.48, "fps": 25.0, "sample_rate": 48000, "dataset": "synthetic"}

``path`` is relative to the dataset root. ``label`` is a class index into the dataset's class list
(None for unlabelled data). Beside it, ``dataset.json`` holds the dataset's name, absolute root,
class names and the manifest format version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vqmae.io import read_json, read_jsonl, write_json, write_jsonl

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.jsonl"
DATASET_INFO_NAME = "dataset.json"


@dataclass
class ClipRecord:
    id: str
    path: str
    speaker: str
    label: int | None = None
    label_name: str | None = None
    targets: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    fps: float = 0.0
    sample_rate: int = 0
    dataset: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> ClipRecord:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"{where}: unknown manifest fields {sorted(unknown)}")
        missing = {"id", "path", "speaker"} - set(d)
        if missing:
            raise ValueError(f"{where}: manifest row lacks {sorted(missing)}")
        return cls(**d)


@dataclass
class Manifest:
    root: Path
    """Dataset root: ``record.path`` is relative to it."""
    records: list[ClipRecord]
    name: str = ""
    classes: list[str] = field(default_factory=list)
    """Class names; ``record.label`` indexes this list."""
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.records)

    def media_path(self, record: ClipRecord) -> Path:
        return self.root / record.path

    def speakers(self) -> list[str]:
        return sorted({r.speaker for r in self.records})

    def by_id(self) -> dict[str, ClipRecord]:
        return {r.id: r for r in self.records}


def write_manifest(out_dir: str | Path, records: list[ClipRecord], *, root: str | Path,
                   name: str, classes: list[str], extra: dict[str, Any] | None = None) -> Path:
    """Write ``manifest.jsonl`` + ``dataset.json`` into ``out_dir`` (atomically). Returns the manifest path."""
    out_dir = Path(out_dir)
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"duplicate clip ids in manifest: {dup}")
    path = write_jsonl(out_dir / MANIFEST_NAME, (r.to_dict() for r in records))
    write_json(out_dir / DATASET_INFO_NAME, {
        "name": name, "root": str(Path(root).resolve()), "classes": list(classes),
        "manifest_version": MANIFEST_VERSION, "num_clips": len(records), **(extra or {}),
    })
    return path


def read_manifest(path: str | Path) -> Manifest:
    """Read a manifest (file or its folder). The root comes from ``dataset.json``, else the folder."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    info_path = path.parent / DATASET_INFO_NAME
    info = read_json(info_path) if info_path.is_file() else {}
    version = info.get("manifest_version", MANIFEST_VERSION)
    if version != MANIFEST_VERSION:
        raise ValueError(f"{info_path}: unknown manifest version {version} (this vqmae reads {MANIFEST_VERSION})")
    root = Path(info.get("root", path.parent))
    if not root.is_absolute():
        root = (path.parent / root).resolve()
    records = [ClipRecord.from_dict(row, where=f"{path} row {i + 1}") for i, row in enumerate(read_jsonl(path))]
    return Manifest(root=root, records=records, name=info.get("name", ""),
                    classes=list(info.get("classes", [])), path=path)
