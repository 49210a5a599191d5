"""A hub cache written the way ``huggingface_hub`` writes it, for tests without network."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.file_download import repo_folder_name

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file (the hub's etag of a non-LFS file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def write_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str = COMMIT, ref: str = "main") -> Path:
    """Put ``folder`` into a hub cache the way ``hf_hub_download`` leaves it:
    ``models--org--name/blobs/<etag>`` (sha256 for LFS files, git blob sha1 otherwise),
    ``snapshots/<commit>/<path>`` relative symlinks to the blobs, ``refs/<ref>`` = commit.
    Load it with ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE=cache`` (or ``cache_dir=cache``)."""
    storage = Path(cache) / repo_folder_name(repo_id=repo_id, repo_type=constants.REPO_TYPE_MODEL)
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        data = f.read_bytes()
        etag = hashlib.sha256(data).hexdigest() if f.suffix == ".safetensors" else git_blob_sha1(data)
        blob = storage / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = storage / "snapshots" / commit / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / ref).write_text(commit)
    return storage
