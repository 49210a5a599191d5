"""Model folders: ``config.json`` + ``model.safetensors``, loadable with ``from_pretrained``.

Every shareable model in vqmae subclasses :class:`PretrainedModel`::

    @register_model("audio-vqvae")
    class AudioVQVAE(PretrainedModel):
        config_class = AudioVQVAEConfig
        def __init__(self, config: AudioVQVAEConfig): ...

    model.save_pretrained("out/audio_tokenizer")
    model = AudioVQVAE.from_pretrained("out/audio_tokenizer")
    model = load_pretrained("out/audio_tokenizer")      # any registered architecture

``config.json`` holds ``architecture``, ``config`` (the dataclass as a dict), ``format_version``
and ``vqmae_version``. Pickle files (``.pt``/``.pth``/``.bin``/``.ckpt``/``.pkl``) are refused:
nothing here ever calls ``torch.load`` on a user's file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vqmae import __version__
from vqmae.config import config_from_dict, config_to_dict
from vqmae.io import atomic_path, write_json

MODEL_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")

_REGISTRY: dict[str, type[PretrainedModel]] = {}

M = TypeVar("M", bound="PretrainedModel")


class ModelFolderError(ValueError):
    """A model folder that cannot be loaded (missing files, unknown version, pickles)."""


def register_model(name: str):
    """Class decorator: make ``name`` loadable by :func:`load_pretrained`."""

    def wrap(cls: type[M]) -> type[M]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"architecture name '{name}' is registered twice")
        cls.architecture = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def registered_models() -> dict[str, type[PretrainedModel]]:
    return dict(_REGISTRY)


def _refuse_pickles(folder: Path) -> None:
    if folder.is_file() and folder.suffix in PICKLE_SUFFIXES:
        raise ModelFolderError(
            f"{folder}: pickle checkpoints are refused (they can run arbitrary code). "
            "vqmae loads model folders with config.json + model.safetensors."
        )


def read_model_config(folder: str | Path, revision: str | None = None) -> dict[str, Any]:
    """Read and check ``config.json`` of a model folder (or hub id ``org/name``, see
    :func:`vqmae.hub.resolve_model_folder`)."""
    from vqmae.hub import resolve_model_folder

    folder = resolve_model_folder(folder, revision)
    _refuse_pickles(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: not a model folder (expected a directory)")
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ModelFolderError(
                f"{folder}: holds pickle checkpoints {pickles}, which are refused; "
                "vqmae loads config.json + model.safetensors only"
            )
        raise ModelFolderError(f"{folder}: no {CONFIG_NAME} (not a vqmae model folder)")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ModelFolderError(f"{cfg_path}: not valid JSON ({e.msg})") from None
    version = meta.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        raise ModelFolderError(
            f"{cfg_path}: unknown model format version {version!r} "
            f"(this vqmae {__version__} reads version {MODEL_FORMAT_VERSION})"
        )
    for key in ("architecture", "config"):
        if key not in meta:
            raise ModelFolderError(f"{cfg_path}: missing '{key}'")
    return meta


def _load_weights(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        raise ModelFolderError(f"{folder}: no {WEIGHTS_NAME}")
    return load_file(str(path), device="cpu")


def state_fingerprint(model: nn.Module, config: Any) -> str:
    """sha256 over the config and every tensor of the state dict (names, shapes, bytes)."""
    h = hashlib.sha256()
    h.update(json.dumps(config_to_dict(config), sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class PretrainedModel(nn.Module):
    """Base class of every shareable vqmae model (one config dataclass per model)."""

    config_class: ClassVar[type]
    architecture: ClassVar[str] = ""

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    def fingerprint(self) -> str:
        """Stable hash of config + weights: identifies exactly which model made an output."""
        return state_fingerprint(self, self.config)

    def extra_metadata(self) -> dict[str, Any]:
        """Extra JSON-safe facts written into config.json (override to add)."""
        return {}

    def save_pretrained(self, folder: str | Path, metadata: dict[str, Any] | None = None,
                        card: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` + a ``README.md`` model card into ``folder``
        (each file atomically). ``card``: extra model-card inputs (training_command, datasets,
        license, results, sections; see :func:`vqmae.model_card.model_card`)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not self.architecture:
            raise ValueError(f"{type(self).__name__} is not registered with @register_model")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(folder / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "architecture": self.architecture})
        meta = {
            "architecture": self.architecture,
            "format_version": MODEL_FORMAT_VERSION,
            "vqmae_version": __version__,
            "config": config_to_dict(self.config),
            "fingerprint": self.fingerprint(),
            **self.extra_metadata(),
            **(metadata or {}),
        }
        write_json(folder / CONFIG_NAME, meta)
        from vqmae.model_card import write_model_card

        try:
            write_model_card(folder, meta, model=self, **(card or {}))
        except Exception as e:  # noqa: BLE001 - the weights are saved; a card problem must not lose them
            import logging

            logging.getLogger("vqmae").warning("%s: model card (README.md) not written: %s: %s",
                                               folder, type(e).__name__, e)
        return folder

    @classmethod
    def from_pretrained(cls: type[M], folder: str | Path, strict: bool = True, *, revision: str | None = None,
                        cache_dir: str | Path | None = None, token: str | bool | None = None,
                        local_files_only: bool = False) -> M:
        """Load a model folder written by ``save_pretrained`` (CPU tensors, eval mode).

        ``folder``: a local folder, or a hub id ``org/name`` (optional ``revision``) fetched with
        ``huggingface_hub.snapshot_download`` through the hub cache (``HF_HUB_OFFLINE=1`` works
        when cached). ``model.pretrained_path`` is the local folder it was read from."""
        from vqmae.hub import is_hub_id, resolve_model_folder

        hub_id = str(folder) if is_hub_id(folder) else ""
        folder = resolve_model_folder(folder, revision, cache_dir=cache_dir, token=token,
                                      local_files_only=local_files_only)
        meta = read_model_config(folder)
        arch = meta["architecture"]
        target: type[PretrainedModel] = cls
        if cls.architecture != arch:
            registered = _REGISTRY.get(arch)
            if registered is None or not issubclass(registered, cls):
                raise ModelFolderError(
                    f"{folder}: holds a '{arch}' model, not a '{cls.architecture or cls.__name__}'"
                )
            target = registered
        config = config_from_dict(target.config_class, meta["config"])
        model = target(config)
        state = _load_weights(folder)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if strict and (missing or unexpected):
            raise ModelFolderError(
                f"{folder}: weights do not match the '{arch}' architecture "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        model.eval()
        model.pretrained_path = str(folder)
        model.hub_id = hub_id or getattr(model, "hub_id", "")
        return model  # type: ignore[return-value]


def load_pretrained(folder: str | Path, revision: str | None = None, **hub_kwargs: Any) -> PretrainedModel:
    """Load any vqmae model folder (or hub id ``org/name``, optional ``revision``; ``hub_kwargs``:
    cache_dir, token, local_files_only), whatever architecture of the package it holds."""
    from vqmae.hub import is_hub_id, resolve_model_folder

    hub_id = str(folder) if is_hub_id(folder) else ""
    local = resolve_model_folder(folder, revision, **hub_kwargs)
    failed = _import_all_models()
    meta = read_model_config(local)
    cls = _REGISTRY.get(meta["architecture"])
    if cls is None:
        why = f"; modules that failed to import: {failed}" if failed else ""
        raise ModelFolderError(
            f"{folder}: unknown architecture '{meta['architecture']}' "
            f"(known: {', '.join(sorted(_REGISTRY))}{why})"
        )
    model = cls.from_pretrained(local)
    model.hub_id = hub_id
    return model


_MODEL_MODULES: list[str] | None = None


def model_modules() -> list[str]:
    """The package's modules that define architectures (a line starting ``@register_model(``),
    found by reading the sources once, so that a new model module needs no list to be updated."""
    global _MODEL_MODULES
    if _MODEL_MODULES is None:
        import re

        root = Path(__file__).resolve().parent
        pattern = re.compile(r"^@register_model\(", re.MULTILINE)
        mods = []
        for path in sorted(root.rglob("*.py")):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if path != Path(__file__).resolve() and pattern.search(text):
                mods.append(".".join(path.relative_to(root.parent).with_suffix("").parts))
        _MODEL_MODULES = mods
    return list(_MODEL_MODULES)


def _import_all_models() -> dict[str, str]:
    """Import every module that registers architectures (lazily, to keep the CLI fast).
    Returns ``{module: error}`` of those that failed to import."""
    import importlib

    failed = {}
    for mod in model_modules():
        try:
            importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - one broken module must not stop loading the others
            failed[mod] = f"{type(e).__name__}: {e}"
    return failed


# --------------------------------------------------------------------- training checkpoints
#
# RUN/checkpoints/step_00000123/   accelerate ``save_state`` files + trainer_state.json
#
# A checkpoint is written into ``.tmp_step_N`` and renamed to ``step_N`` once complete
# (trainer_state.json, written last, lists its files). Old checkpoints are pruned by renaming
# them to ``.del_step_N`` first, so a kill at any moment leaves only complete ``step_N`` folders
# plus hidden leftovers, which :func:`clean_stale_checkpoints` removes and :func:`list_checkpoints`
# never returns. Only checkpoints whose weights and optimizer state are all finite are written
# (:func:`all_finite`), so the newest checkpoint is always one a run can resume from.

TRAINER_STATE = "trainer_state.json"


def _step_of(folder: Path) -> int:
    try:
        return int(folder.name.split("_")[1])
    except (IndexError, ValueError):
        return -1


def is_complete_checkpoint(folder: Path) -> bool:
    """``step_N`` holding a readable trainer_state.json and every file it lists."""
    state_path = folder / TRAINER_STATE
    if not folder.is_dir() or _step_of(folder) < 0 or not state_path.is_file():
        return False
    try:
        files = json.loads(state_path.read_text()).get("files")
    except (json.JSONDecodeError, OSError, AttributeError):
        return False
    return files is None or all((folder / f).exists() for f in files)


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run (``RUN/checkpoints/step_N``), oldest first."""
    ckpt = Path(run_dir) / "checkpoints"
    if not ckpt.is_dir():
        return []
    done = [p for p in ckpt.iterdir() if p.name.startswith("step_") and is_complete_checkpoint(p)]
    return sorted(done, key=_step_of)


def clean_stale_checkpoints(checkpoint_dir: str | Path) -> list[Path]:
    """Remove what an interrupted save or prune left: ``.tmp_*``/``.del_*`` folders and
    ``step_N`` folders that are empty or incomplete. Returns the removed paths."""
    import shutil

    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.is_dir() and (
        p.name.startswith((".tmp_step_", ".del_step_"))
        or (p.name.startswith("step_") and not is_complete_checkpoint(p)))]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def all_finite(model: nn.Module, optimizer: Any = None) -> bool:
    """True when every floating-point weight/buffer of ``model`` and every tensor of the
    optimizer state is finite."""
    tensors = list(model.state_dict().values())
    if optimizer is not None:
        for per_param in optimizer.state.values():
            tensors += [v for v in per_param.values() if isinstance(v, torch.Tensor)]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def save_training_checkpoint(accelerator: Any, checkpoint_dir: Path, state: dict[str, Any],
                             keep: int) -> Path:
    """``accelerator.save_state`` + trainer_state.json as ``checkpoint_dir/step_N`` (atomic
    rename), then prune to the newest ``keep`` (0 = keep all); the new one is never pruned."""
    import os
    import shutil

    final = checkpoint_dir / f"step_{state['step']:08d}"
    tmp = checkpoint_dir / f".tmp_{final.name}"
    main = accelerator.is_main_process
    if main:
        clean_stale_checkpoints(checkpoint_dir)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if main:
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        write_json(tmp / TRAINER_STATE, {**state, "files": files})
        if final.exists():
            os.replace(final, checkpoint_dir / f".del_{final.name}")
        os.replace(tmp, final)
        done = list_checkpoints(checkpoint_dir.parent)
        old = [p for p in done if p != final][: max(0, len(done) - keep)] if keep > 0 else []
        for p in old:
            trash = checkpoint_dir / f".del_{p.name}"
            os.replace(p, trash)
            shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(checkpoint_dir / f".del_{final.name}", ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_trainer_state(folder: Path) -> dict[str, Any]:
    """The trainer state saved with a checkpoint (without its file list)."""
    state = json.loads((folder / TRAINER_STATE).read_text())
    state.pop("files", None)
    return state


def save_weights(model: nn.Module, folder: Path) -> Path:
    """``folder/model.safetensors`` with the model's state dict (atomic; the best epoch of a run)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    return folder / WEIGHTS_NAME


def load_weights(model: nn.Module, folder: Path) -> None:
    """Load what :func:`save_weights` wrote (strict)."""
    model.load_state_dict(load_file(str(folder / WEIGHTS_NAME), device="cpu"))
