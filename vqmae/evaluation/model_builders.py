"""The models each fold of ``vqmae finetune`` starts from: the pretrained VQ-MAE-AV encoder (checked
against the token store: same token shapes, codebooks and tokenizer fingerprints), or the same
architecture from random init, with a fresh classification / regression head."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vqmae.checkpoint import CONFIG_NAME, PICKLE_SUFFIXES, ModelFolderError, read_model_config
from vqmae.data.clips import WINDOW_SECONDS
from vqmae.data.token_store import TokenStore
from vqmae.errors import UserError
from vqmae.evaluation.task import Task
from vqmae.hub import store_tokenizer_record
from vqmae.runs import log

if TYPE_CHECKING:
    from vqmae.vssl.harness import VSSLBuilders

WEIGHTS_NAME = "model.safetensors"


def check_init_folder(init: str) -> None:
    """``init`` must be a ``vqmae pretrain`` model folder (config.json + model.safetensors);
    a folder of pickle checkpoints (``model.pt``) or anything else is a :class:`UserError`."""
    folder = Path(init)
    if not folder.is_dir():
        raise UserError(f"--init {init}: not a folder (give a `vqmae pretrain` output or init=none)")
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not (folder / WEIGHTS_NAME).is_file() or not (folder / CONFIG_NAME).is_file():
        what = f"holds pickle checkpoints {pickles}, which vqmae refuses to load (they can run code)" \
            if pickles else f"has no {CONFIG_NAME} + {WEIGHTS_NAME}"
        raise UserError(f"--init {init}: {what}; give the model folder of a `vqmae pretrain` run "
                        f"(OUT/model), or init=none")


def check_mae_fits_store(mae_cfg: Any, store: TokenStore, init: str) -> None:
    """The pretrained model must have seen tokens of the same shape and codebook as the store,
    made by the same tokenizers (fingerprints recorded by ``vqmae pretrain``)."""
    for m in mae_cfg.modalities:
        if m not in store.modalities:
            continue
        spec = mae_cfg.spec(m)
        shape, K = tuple(store.token_shape(m)), store.codebook_size(m)
        if tuple(spec.token_shape) != shape or spec.codebook_size != K:
            raise UserError(f"{init}: pretrained on {m} tokens {spec.token_shape} with {spec.codebook_size} "
                            f"codes, but {store.root} holds {shape} with {K} codes (another tokenizer)")
    for m, fp in mae_fingerprints(init).items():
        ours = store.provenance.get(m, {}).get("fingerprint") if m in store.modalities else None
        if ours is not None and ours != fp:
            raise UserError(f"tokenizer mismatch: {init} was pretrained on {m} tokens of tokenizer {fp}, "
                            f"but {store.root} holds {m} tokens of tokenizer {ours}; tokenize with the "
                            "pretraining's tokenizers or pretrain on this store")


def mae_fingerprints(init: str) -> dict[str, str]:
    """Tokenizer fingerprints a pretrained folder records (``vqmae pretrain`` writes
    ``token_store.provenance.<modality>.fingerprint`` into config.json)."""
    meta = read_model_config(init)
    prov = (meta.get("token_store") or {}).get("provenance") or {}
    return {m: p["fingerprint"] for m, p in prov.items()
            if isinstance(p, dict) and isinstance(p.get("fingerprint"), str)}


def model_info(store: TokenStore, task: Task, init: str, window_seconds: float,
               inputs: str = "tokens") -> dict[str, Any]:
    """What a saved fold model records so that ``evaluate`` and ``predict`` can use it alone.
    ``inputs="wave"`` (a VSSL model): no tokenizers; its audio is the store's media files."""
    return {
        "task": {"kind": task.kind, "classes": task.classes, "target_names": task.target_names},
        "inputs": inputs,
        "tokenizers": {m: store_tokenizer_record(store.provenance[m]) for m in store.modalities}
        if inputs == "tokens" else {},
        "clip_config": dict(store.meta.get("clip_config", {})),
        "store": str(store.root),
        "init": init,
        "window_seconds": window_seconds,
    }


class Builders:
    """Fresh models for each fold: pretrained (from ``init``) or random init of the same
    architecture. ``init`` in ("", "none"): the architecture is the MAE preset ``arch`` fitted to
    the store's token shapes (``window_seconds`` 0 = 2 s). A VSSL folder as ``init``: waveform
    models on its audio encoder (``self.vssl``, :mod:`vqmae.vssl.harness`)."""

    def __init__(self, init: str, store: TokenStore, task: Task, head: str = "attention",
                 arch: str = "demo", window_seconds: float = 0.0, speaker_norm: bool = False,
                 code_readout: bool = False, codebook_init: bool = False):
        from vqmae.mae import cfg_for_store
        from vqmae.mae.classifier import mae_config_of

        self.init, self.store, self.task, self.head = init, store, task, head
        self.speaker_norm, self.code_readout, self.codebook_init = speaker_norm, code_readout, codebook_init
        self._codebooks: dict[str, Any] | None = None
        self.vssl: VSSLBuilders | None = None
        self.mae_cfg: Any = None
        self.pretrained = init not in ("", "none")
        if self.pretrained:
            from vqmae.hub import resolve_model_folder

            try:  # a hub id org/name -> its snapshot folder in the hub cache
                init = self.init = str(resolve_model_folder(init))
            except ModelFolderError as e:
                raise UserError(f"--init {e}") from None
            check_init_folder(init)
            from vqmae.vssl.harness import VSSLBuilders, is_vssl_folder

            if is_vssl_folder(init):  # a VSSL audio encoder: waveform models (vqmae.vssl.harness)
                self.vssl = VSSLBuilders(init, task, head, window_seconds)
                return
            try:
                self.mae_cfg = mae_config_of(init)
                check_mae_fits_store(self.mae_cfg, store, init)
            except ModelFolderError as e:
                raise UserError(str(e)) from None
        else:
            self.mae_cfg = cfg_for_store(store.provenance, preset=arch, window_seconds=window_seconds or WINDOW_SECONDS)

    @property
    def window_seconds(self) -> float:
        return self.vssl.window_seconds if self.vssl else float(self.mae_cfg.window_seconds)

    @property
    def arch_config(self) -> Any:
        """The architecture config of the models built (what an experiment's cache key records)."""
        return self.vssl.arch_config if self.vssl else self.mae_cfg

    def __call__(self, modalities: tuple[str, ...], pretrained: bool, head: str | None = None
                 ) -> Callable[[], Any]:
        from vqmae.mae.classifier import ClassifierConfig, EmotionClassifier, encoder_config_for

        if self.vssl is not None:
            return self.vssl(modalities, pretrained, head)
        t = self.task
        fields = dict(modalities=modalities, num_classes=t.num_classes, num_targets=t.num_targets,
                      classes=list(t.classes), target_names=list(t.target_names), head=head or self.head,
                      speaker_norm=self.speaker_norm, code_readout=self.code_readout)
        missing = [m for m in modalities if m not in self.mae_cfg.modalities]
        if missing:
            raise UserError(f"the encoder has no {', '.join(missing)} input (modalities "
                            f"{', '.join(self.mae_cfg.modalities)})")

        def build():
            if pretrained:
                model, report = EmotionClassifier.from_mae(self.init, **fields)
                log.debug("%s", report.summary())
                return model
            enc = encoder_config_for(self.mae_cfg, modalities)
            model = EmotionClassifier(ClassifierConfig(encoder=enc, **fields))
            if self.codebook_init:
                from vqmae.mae.pretraining import init_from_codebooks

                init_from_codebooks(model.encoder, self.codebooks())
            return model

        return build

    def codebooks(self) -> dict[str, Any]:
        """The store's tokenizer codebooks ``{modality: (K, D) tensor}`` (those that load)."""
        if self._codebooks is None:
            from vqmae.mae.pretraining import store_codebooks

            self._codebooks = store_codebooks(self.store)
        return self._codebooks
