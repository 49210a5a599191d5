"""Model sharing: hub ids, the hub cache, pushing folders, self-contained models.

Everything network-related goes through ``huggingface_hub`` (``snapshot_download`` through the
hub cache, ``HfApi.upload_folder``); vqmae makes no HTTP calls of its own::

    folder = resolve_model_folder("org/name", revision="v1")   # local folder or hub id -> local path
    push_folder("runs/demo/pretrain/model", "org/vqmae-av-demo")  # create repo + one commit

``HF_HUB_OFFLINE=1`` loads a cached hub model without touching the network. Pickle files are
never downloaded (``ignore_patterns``) nor uploaded.

Why not ``PyTorchModelHubMixin``: its ``from_pretrained`` falls back to ``pytorch_model.bin``
(a pickle) and its ``config.json`` is the flat ``__init__`` kwargs, while a vqmae folder's
``config.json`` names the architecture, format version and fingerprint. The mixin's own building
blocks (``snapshot_download``, ``upload_folder``, ``ModelCard``) are used instead.

Self-contained models: :func:`bundle_tokenizers` copies the tokenizer folders a model was trained
on into ``MODEL/tokenizers/<modality>/`` and records them relative to the model folder
(``"bundled": "tokenizers/audio"``, plus the hub id and commit when they came from the hub);
:func:`resolve_tokenizer_folder` finds them again from any working directory.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from vqmae.checkpoint import CONFIG_NAME, PICKLE_SUFFIXES, WEIGHTS_NAME, ModelFolderError

TOKENIZERS_DIR = "tokenizers"
# what bundling adds to a tokenizer record ("dir" keeps what was recorded before)
BUNDLE_KEYS = ("bundled", "hub_id", "revision", "source_dir")
CARD_NAME = "README.md"
# the files of a model folder that bundling copies
MODEL_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME)
PICKLE_PATTERNS = [f"*{s}" for s in PICKLE_SUFFIXES]
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class HubError(ModelFolderError):
    """A hub id that cannot be resolved (not cached offline, not found, no access)."""


def is_hub_id(name: str | Path) -> bool:
    """``org/name`` (one slash, hub characters) that is not an existing local path."""
    s = str(name)
    return (bool(_HUB_ID.match(s)) and "--" not in s and ".." not in s and not s.endswith(".git")
            and not Path(s).exists())


def resolve_model_folder(name_or_path: str | Path, revision: str | None = None, *,
                         cache_dir: str | Path | None = None, token: str | bool | None = None,
                         local_files_only: bool = False) -> Path:
    """A local model folder as is, or a hub id resolved to its snapshot folder in the hub cache
    (downloaded if needed; offline with ``HF_HUB_OFFLINE=1`` or ``local_files_only`` when cached)."""
    if not is_hub_id(name_or_path):
        if revision:
            raise ModelFolderError(f"{name_or_path}: revision={revision!r} given for a local folder "
                                   "(revisions apply to hub ids org/name)")
        return Path(name_or_path)
    from huggingface_hub import snapshot_download

    repo_id = str(name_or_path)
    try:
        path = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                 local_files_only=local_files_only, ignore_patterns=PICKLE_PATTERNS,
                                 library_name="vqmae", library_version=_version())
    except Exception as e:  # noqa: BLE001 - every hub failure becomes one clear message
        raise HubError(_hub_error_message(repo_id, revision, e)) from None
    return Path(path)


def _hub_error_message(repo_id: str, revision: str | None, e: Exception) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    rev = f" (revision {revision})" if revision else ""
    head = f"'{repo_id}'{rev} is not a local folder, and as a hub id it"
    if isinstance(e, RevisionNotFoundError):
        return f"{head} has no revision '{revision}' on the hub"
    if isinstance(e, RepositoryNotFoundError):
        return f"{head} was not found on the hub (or needs a token: --token / `hf auth login`)"
    if isinstance(e, LocalEntryNotFoundError) or constants.is_offline_mode():
        return (f"{head} is not in the hub cache ({constants.HF_HUB_CACHE}) and the hub cannot be "
                "reached (HF_HUB_OFFLINE=1 or no network); download it once online")
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{head} could not be downloaded: {type(e).__name__}: {first}"


def _version() -> str:
    from vqmae import __version__

    return __version__


def push_folder(folder: str | Path, repo_id: str, *, revision: str | None = None,
                private: bool | None = None, token: str | bool | None = None,
                commit_message: str | None = None, create_pr: bool = False,
                bundle: bool = True) -> Any:
    """Upload a model folder to the hub as one commit (creating the repo / branch if needed).

    Checks the folder first (``config.json`` readable, no pickles) and writes its model card if it
    has none. ``bundle``: first copy the tokenizers the model records but does not hold (and that
    did not come from the hub) into it (:func:`make_self_contained`), so that it runs from media
    once downloaded. Returns huggingface_hub's ``CommitInfo`` (``.commit_url``, ``.oid``)."""
    from huggingface_hub import HfApi

    from vqmae.checkpoint import read_model_config

    folder = Path(folder)
    meta = read_model_config(folder)
    pickles = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelFolderError(f"{folder}: holds pickle files {pickles[:5]}; remove them before pushing")
    outside = [m for m, r in tokenizer_records(meta).items()
               if not r.get("bundled") and not r.get("hub_id") and (r.get("dir") or r.get("tokenizer_dir"))]
    if bundle and outside:
        logging.getLogger("vqmae").info("push: bundling the %s tokenizer(s) into %s", ", ".join(outside), folder)
        meta = make_self_contained(folder, strict=False)
    if not (folder / CARD_NAME).is_file():
        from vqmae.model_card import write_model_card

        write_model_card(folder, meta)
    api = HfApi(token=token, library_name="vqmae", library_version=_version())
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision and revision != "main" and not create_pr:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id, folder_path=folder, revision=revision, create_pr=create_pr or None,
        commit_message=commit_message or f"Upload {meta['architecture']} model with vqmae {_version()}",
        ignore_patterns=[*PICKLE_PATTERNS, ".*", "**/.*"],
    )


# ----------------------------------------------------------------------- self-contained models


def tokenizer_records(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tokenizer records of a model's ``config.json``, by modality (a classifier's
    ``info.tokenizers``: ``dir``; a pretrained model's ``token_store.provenance``: ``tokenizer_dir``)."""
    info = meta.get("info") or {}
    if isinstance(info.get("tokenizers"), dict):
        return {m: dict(r or {}) for m, r in info["tokenizers"].items()}
    prov = (meta.get("token_store") or {}).get("provenance") or {}
    return {m: {**store_tokenizer_record(r), **{k: r[k] for k in BUNDLE_KEYS if r.get(k)}}
            for m, r in prov.items() if isinstance(r, dict)}


def _tokenizer_model_dir(folder: Path) -> Path:
    """A tokenizer model folder, or the ``model/`` folder of a train-tokenizer run folder."""
    if not (folder / CONFIG_NAME).is_file() and (folder / "model" / CONFIG_NAME).is_file():
        return folder / "model"
    return folder


def folder_fingerprint(folder: str | Path) -> str:
    """The fingerprint a model folder's ``config.json`` records ('' if none)."""
    try:
        return str(json.loads((Path(folder) / CONFIG_NAME).read_text()).get("fingerprint") or "")
    except (OSError, ValueError):
        return ""


def tokenizer_source(folder_or_id: str | Path, revision: str | None = None) -> dict[str, Any]:
    """Where a tokenizer came from, for a record: ``{"dir": local folder, "fingerprint": ...}``
    plus ``hub_id`` and ``revision`` (the commit) when ``folder_or_id`` is a hub id. The token
    store keeps these as ``tokenizer_dir`` / ``tokenizer_hub_id`` / ``tokenizer_revision``."""
    rec: dict[str, Any] = {}
    if is_hub_id(folder_or_id):
        local = resolve_model_folder(folder_or_id, revision)
        rec.update(hub_id=str(folder_or_id), revision=local.name)  # snapshots/<commit>
    else:
        local = Path(folder_or_id)
    local = _tokenizer_model_dir(local)
    rec.update(dir=str(local), fingerprint=folder_fingerprint(local))
    return rec


def bundle_tokenizers(model_folder: str | Path, records: dict[str, dict[str, Any]],
                      base_dir: str | Path | None = None, strict: bool = True) -> dict[str, dict[str, Any]]:
    """Copy each tokenizer folder into ``model_folder/tokenizers/<modality>/`` (``config.json``,
    ``model.safetensors``, ``README.md``; hard links when possible) and return the records with
    ``bundled`` (that folder, relative to the model folder), ``source_dir`` (absolute) or
    ``hub_id``/``revision`` (the commit) when it came from the hub; ``dir`` is kept as it was, so
    readers of the old records still work.

    ``records``: ``{modality: {"dir": folder or hub id, "fingerprint": ..., ...}}`` (relative
    ``dir`` taken from ``base_dir``, default the working directory). A recorded fingerprint must
    match the copied folder's. Call it before ``save_pretrained`` with the returned records in the
    model's metadata, or use :func:`make_self_contained` on a saved folder. ``strict=False``: a
    tokenizer that cannot be found keeps its record as it was (logged), instead of an error."""
    model_folder = Path(model_folder)
    out: dict[str, dict[str, Any]] = {}
    for m, rec in records.items():
        if not (rec.get("dir") or rec.get("tokenizer_dir") or rec.get("hub_id")):
            out[m] = dict(rec)  # nothing recorded (e.g. a synthetic store): nothing to bundle
            continue
        try:
            out[m] = _bundle_one(model_folder, m, dict(rec), base_dir)
        except ModelFolderError as e:
            if strict:
                raise
            logging.getLogger("vqmae").warning("%s: the %s tokenizer is not bundled: %s", model_folder, m, e)
            out[m] = dict(rec)
    return out


def _bundle_one(model_folder: Path, m: str, rec: dict[str, Any], base_dir: str | Path | None) -> dict[str, Any]:
    """Bundle one tokenizer (see :func:`bundle_tokenizers`); returns its new record."""
    src_name = str(rec.get("dir") or rec.get("tokenizer_dir") or "")
    dest = model_folder / TOKENIZERS_DIR / m
    local = None
    if src_name:
        local = Path(src_name)
        if not local.is_absolute():
            local = Path(base_dir or ".") / local
        local = _tokenizer_model_dir(local)
    want = rec.get("fingerprint")

    def matches(p: Path) -> bool:
        fp = folder_fingerprint(p)
        return not (want and fp and fp != want)

    local_ok = local is not None and (local / CONFIG_NAME).is_file() and local.resolve() != dest.resolve()
    if local_ok and matches(local):
        src = local
    elif (dest / CONFIG_NAME).is_file() and matches(dest):  # bundled before (a re-save): keep it
        return {**rec, "bundled": f"{TOKENIZERS_DIR}/{m}"}
    elif rec.get("hub_id") or (is_hub_id(src_name) and not local_ok):
        hub_id = str(rec.get("hub_id") or src_name)
        snapshot = resolve_model_folder(hub_id, rec.get("revision") or None)
        src = _tokenizer_model_dir(snapshot)
        rec.update(hub_id=hub_id, revision=snapshot.name)  # snapshots/<commit>
    elif local_ok:
        raise ModelFolderError(f"{local}: tokenizer {folder_fingerprint(local)[:12]}… is not the one recorded "
                               f"({str(want)[:12]}…)")
    else:
        raise ModelFolderError(f"the {m} tokenizer folder '{src_name}' is not found; cannot bundle it "
                               f"into {model_folder}")
    fp = folder_fingerprint(src)
    if not matches(src):
        raise ModelFolderError(f"{src}: tokenizer {fp[:12]}… is not the one recorded ({str(want)[:12]}…)")
    dest.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (src / name).is_file():
            _link_or_copy(src / name, dest / name)
    out = {**rec, "bundled": f"{TOKENIZERS_DIR}/{m}", "fingerprint": fp or want or ""}
    if not rec.get("hub_id"):
        out["source_dir"] = str(src.resolve())
    return out


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link to ``src``'s content (hub cache files are symlinks: the blob is linked), or a
    copy across file systems. Safe because model files are only ever replaced by rename."""
    import os

    if dest.exists() or dest.is_symlink():
        dest.unlink()
    try:
        os.link(src.resolve(), dest)
    except OSError:
        shutil.copyfile(src, dest)


def store_tokenizer_record(prov: dict[str, Any]) -> dict[str, Any]:
    """A token store's provenance of one modality -> the tokenizer record a model keeps
    (``dir``, ``fingerprint``, ``frames_per_second``, and ``hub_id``/``revision`` when the store
    recorded ``tokenizer_hub_id``/``tokenizer_revision``)."""
    rec = {"dir": prov.get("tokenizer_dir", ""), "fingerprint": prov.get("fingerprint", ""),
           "frames_per_second": prov.get("frames_per_second")}
    if prov.get("tokenizer_hub_id"):
        rec.update(hub_id=prov["tokenizer_hub_id"], revision=prov.get("tokenizer_revision", ""))
    return rec


def make_self_contained(model_folder: str | Path, base_dir: str | Path | None = None,
                        strict: bool = True, card: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bundle the tokenizers a saved model folder records (see :func:`bundle_tokenizers`), rewrite
    its ``config.json`` records and model card (``card``: extra card inputs, as for
    ``save_pretrained``). Returns the new config.json dict."""
    from vqmae.checkpoint import read_model_config
    from vqmae.io import write_json
    from vqmae.model_card import write_model_card

    model_folder = Path(model_folder)
    meta = read_model_config(model_folder)
    recs = bundle_tokenizers(model_folder, tokenizer_records(meta), base_dir, strict=strict)
    if isinstance((meta.get("info") or {}).get("tokenizers"), dict):
        meta["info"]["tokenizers"] = recs
    elif (meta.get("token_store") or {}).get("provenance"):
        prov = meta["token_store"]["provenance"]
        for m, r in recs.items():
            prov[m] = {**prov.get(m, {}), **{k: r[k] for k in BUNDLE_KEYS if r.get(k)}}
    write_json(model_folder / CONFIG_NAME, meta)
    write_model_card(model_folder, meta, **(card or {}))
    return meta


def resolve_tokenizer_folder(model_folder: str | Path | None, modality: str, record: dict[str, Any],
                             override: str | Path | None = None) -> Path:
    """The tokenizer folder of ``modality`` for a model, from any working directory: ``override``;
    else inside the model folder (the recorded ``bundled`` folder, then ``tokenizers/<modality>``);
    else the recorded ``hub_id`` (through the hub cache); else the recorded path as given (old
    records: relative to the directory the model was trained from), relative to the model
    folder's parents, or ``source_dir``. A recorded fingerprint must match: a folder with another
    tokenizer is passed over (an error naming it if nothing else matches; at once for ``override``)."""
    want = record.get("fingerprint") or ""
    tried: list[str] = []
    wrong: list[str] = []

    def ok(p: Path) -> Path | None:
        p = _tokenizer_model_dir(p)
        tried.append(str(p))
        if not (p / CONFIG_NAME).is_file():
            return None
        fp = folder_fingerprint(p)
        if want and fp and fp != want:
            wrong.append(f"{p}: tokenizer {fp[:12]}… is not the one the model was trained with ({want[:12]}…)")
            return None
        return p

    if override:
        if (found := ok(Path(override))) is None:
            raise ModelFolderError(wrong[0] if wrong else f"{override}: not a tokenizer model folder (no {CONFIG_NAME})")
        return found
    rec_dir = str(record.get("dir") or record.get("tokenizer_dir") or "")
    mf = Path(model_folder) if model_folder is not None else None
    candidates: list[Path] = []
    if mf is not None:
        if record.get("bundled"):
            candidates.append(mf / str(record["bundled"]))
        candidates.append(mf / TOKENIZERS_DIR / modality)
    for c in candidates:
        if (found := ok(c)) is not None:
            return found
    hub_id = record.get("hub_id") or ""
    if hub_id:
        try:
            if (found := ok(resolve_model_folder(hub_id, record.get("revision") or None))) is not None:
                return found
        except HubError as e:
            tried.append(f"hub {hub_id}: {e}")
    old: list[Path] = []
    if rec_dir:
        old.append(Path(rec_dir))
        if mf is not None and not Path(rec_dir).is_absolute():
            old += [parent / rec_dir for parent in mf.resolve().parents]
    if record.get("source_dir"):
        old.append(Path(record["source_dir"]))
    for c in old:
        if (found := ok(c)) is not None:
            return found
    if wrong:
        raise ModelFolderError(f"the {modality} tokenizer of {model_folder or 'the model'}: " + "; ".join(wrong))
    raise ModelFolderError(f"the {modality} tokenizer of {model_folder or 'the model'} is not found "
                           f"(looked in {', '.join(dict.fromkeys(tried)) or 'nowhere: nothing recorded'}); "
                           f"give --{modality}-tokenizer DIR")
