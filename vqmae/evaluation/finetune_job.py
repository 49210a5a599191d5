"""The job of ``vqmae finetune``: every experiment × modality set over every speaker-independent
fold, then label efficiency and noise robustness if asked; results in ``OUT/results.json|md``.

Experiments: ``finetune`` (the pretrained encoder, all weights trained), ``scratch`` (the same
architecture from random init), ``probe`` (pretrained encoder frozen, head trained), ``logreg``
(scikit-learn logistic regression on frozen encoder features, per patch position), ``codes`` (a linear probe on
tokenizer codebook statistics, no encoder: :mod:`vqmae.evaluation.codes_probe`). ``init=none``:
no pretrained model; the architecture comes from ``arch`` (an MAE preset fitted to the store) and only
``scratch`` and ``codes`` run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vqmae.config import config_to_dict, save_config, setting
from vqmae.data.token_store import StoreError, TokenStore
from vqmae.errors import UserError
from vqmae.evaluation.codes_probe import build_codes_model
from vqmae.evaluation.experiments import Experiment, run_experiment
from vqmae.evaluation.model_builders import Builders, model_info
from vqmae.evaluation.protocol import ProtocolConfig
from vqmae.evaluation.results import fmt_summary, metrics_for_task, write_results
from vqmae.evaluation.robustness import confusion_png, missing_modality_rows, noise_robustness
from vqmae.evaluation.splits import MIN_TRAIN_SPEAKERS, fold_clips, fold_title
from vqmae.evaluation.task import Task, infer_task
from vqmae.model_card import write_fold_cards
from vqmae.runs import log
from vqmae.training import barrier, init_distributed_if_launched, is_main_process

MODALITY_SETS: dict[str, tuple[str, ...]] = {"audio": ("audio",), "visual": ("visual",),
                                             "av": ("audio", "visual")}
DESCRIPTIONS = {
    "finetune": "pretrained VQ-MAE-AV, fine-tuned",
    "scratch": "same architecture, random init (supervised from scratch)",
    "probe": "pretrained encoder frozen, attention head trained",
    "logreg": "logistic regression on frozen encoder features (per patch position, mean / std over time)",
    "codes": "linear probe on tokenizer codebook statistics",
}
EXPERIMENTS = tuple(DESCRIPTIONS)
ModalitySet = Literal["audio", "visual", "av"]
ExperimentName = Literal["finetune", "scratch", "probe", "logreg", "codes"]


@dataclass
class FinetuneConfig(ProtocolConfig):
    """Settings of ``vqmae finetune`` (plus the protocol settings it shares with evaluate)."""

    tokens: str = ""
    """Token store (vqmae tokenize). Required."""
    init: str = ""
    """Pretrained VQ-MAE-AV folder (vqmae pretrain OUT/model), or 'none' to train from scratch only. Required."""
    folds: str = ""
    """folds.json (vqmae prepare); '' = the one beside the store's manifest, else made here
    (fold_protocol, num_folds, fold_seed) and written to OUT/folds.json."""
    out: str = ""
    """Output folder. Required."""
    modalities: list[ModalitySet] = field(default_factory=lambda: ["av"])
    """Input sets to run (each a separate model)."""
    trained_modalities: list[ModalitySet] = field(default_factory=list)
    """Input sets of the trained experiments (finetune, scratch, probe) when they should differ
    from ``modalities``: e.g. [av] trains one audio+visual model per fold (with modality_dropout
    it is also tested with each input alone) while the cheap probes run every input set."""
    experiments: list[ExperimentName] = field(default_factory=lambda: ["finetune"])
    """See the module doc."""
    arch: str = "demo"
    """MAE preset for init=none (fitted to the store's token shapes)."""
    fold_protocol: Literal["kfold", "loso", "ravdess6", "cremad5", "split"] = "kfold"
    num_folds: int = setting(5, ge=2, help="k of the k-fold protocol when the folds are made here.")
    fold_seed: int = 0
    max_folds: int = setting(0, ge=0, help=(
        "Run only the first N folds (0 = all; quick runs — results then cover fewer speakers)."))
    label_fractions: list[float] = field(default_factory=list)
    """Label efficiency: fractions in (0, 1] of the training labels (e.g. 0.01,0.05,0.1,0.25,1); [] = skip."""
    label_experiments: list[ExperimentName] = field(default_factory=lambda: ["finetune", "scratch"])
    label_modalities: str = ""
    """Input set of the label-efficiency runs ('' = the first of modalities)."""
    noise: list[Literal["white", "babble"]] = field(default_factory=list)
    """Noise robustness ([] = skip); needs the media files and the audio tokenizer."""
    snr_db: list[float] = field(default_factory=lambda: [20.0, 10.0, 5.0, 0.0])
    noise_experiments: list[str] = field(default_factory=list)
    """Experiments (e.g. finetune-av) evaluated in noise; [] = every trained one with audio input."""
    babble_talkers: int = setting(6, ge=1, help="Other speakers mixed into babble noise.")
    seed: int = setting(-1, ge=-1, help=(
        "Seed of the training windows, head init and label subsets: sets train.seed (-1 = keep train.seed)."))
    save_models: bool = True
    resume: bool = True
    """Reuse folds finished by an earlier run with the same settings."""
    preset: str = ""
    """Named settings applied first, from vqmae/presets/finetune.yaml: paper | demo (recorded here)."""

    def __post_init__(self) -> None:
        bad = [f for f in self.label_fractions if not 0 < f <= 1]
        if bad:
            raise ValueError(f"label_fractions: {bad} not in (0, 1]")
        if self.label_modalities and self.label_modalities not in MODALITY_SETS:
            raise ValueError(f"label_modalities: {self.label_modalities!r} is not one of {list(MODALITY_SETS)}")


def open_store(path: str) -> TokenStore:
    try:
        return TokenStore.open(path)
    except StoreError as e:
        raise UserError(str(e)) from None


def load_folds(cfg: FinetuneConfig, store: TokenStore, out: Path) -> tuple[list[Any], str]:
    """The folds to run and where they came from."""
    from vqmae.data.folds import FoldsError, load_or_make_folds, read_folds

    speakers = sorted({str(c.speaker) for c in store.clips})
    try:
        if cfg.folds:
            folds, source = read_folds(cfg.folds), str(cfg.folds)
        else:
            beside = Path(store.meta.get("manifest", "") or "/nonexistent").parent / "folds.json"
            if beside.is_file():
                folds, source = read_folds(beside), str(beside)
            else:
                folds, _ = load_or_make_folds(out / "folds.json", speakers, cfg.fold_protocol,
                                              cfg.num_folds, cfg.fold_seed)
                source = (f"{out / 'folds.json'} (made here: {cfg.fold_protocol}, k={cfg.num_folds}, "
                          f"seed={cfg.fold_seed})")
    except (FoldsError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    unknown = sorted({s for f in folds for s in (*f.train, *f.val, *f.test)} - set(speakers))
    if unknown:
        log.warning("folds name %d speakers the store does not have (e.g. %s)", len(unknown), unknown[:3])
    if cfg.max_folds:
        folds = folds[: cfg.max_folds]
    return folds, source


def modality_set(name: str, store: TokenStore) -> tuple[str, ...]:
    mods = MODALITY_SETS[name]
    missing = [m for m in mods if m not in store.modalities]
    if missing:
        raise UserError(f"{store.root}: holds no {', '.join(missing)} tokens (it has {', '.join(store.modalities)})")
    return mods


def make_experiments(cfg: FinetuneConfig, builders: Builders, store: TokenStore, task: Task,
                     fraction: float = 1.0, names: list[str] | None = None,
                     modality_names: list[str] | None = None) -> list[Experiment]:
    """The experiments × modality sets to run (``init=none``: ``scratch`` and ``codes`` only)."""
    info = model_info(store, task, cfg.init if builders.pretrained else "none", builders.window_seconds,
                      "wave" if builders.vssl else "tokens")
    wanted = list(names or cfg.experiments)
    if not builders.pretrained:
        dropped = [e for e in wanted if e not in ("scratch", "codes")]
        if dropped:
            log.info("init=none: running 'scratch' and 'codes' only (no pretrained encoder for %s)",
                     ", ".join(dropped))
        wanted = [e for e in wanted if e in ("scratch", "codes")] or ["scratch"]
    key_cfg = {k: v for k, v in config_to_dict(cfg).items() if k in ProtocolConfig.__dataclass_fields__}
    logreg_key = {k: key_cfg[k] for k in ("task", "window_seconds", "eval_stride_seconds", "speaker_norm")}
    exps = []
    # experiment-major order: the cheap probes of every input set finish (and are written to
    # results.json) before the first fine-tuning run starts
    for e in dict.fromkeys(wanted):
        trained = e in ("finetune", "scratch", "probe") and cfg.trained_modalities and not modality_names
        for mname in cfg.trained_modalities if trained else (modality_names or cfg.modalities):
            mods = modality_set(mname, store)
            if e == "codes":  # no encoder: tokenizer codebook statistics
                key = {"experiment": e, "modalities": list(mods), "fraction": fraction, "store": str(store.root),
                       "protocol": {k: key_cfg[k] for k in ("task", "speaker_norm", "select_metric")},
                       "seed": cfg.train.seed}
                exps.append(Experiment(f"codes-{mname}", lambda mods=mods: build_codes_model(store, mods),
                                       "codes", DESCRIPTIONS[e], mods, fraction, info, key))
                continue
            build = builders(mods, pretrained=e != "scratch", head="mean" if e == "logreg" else None)
            key = {"experiment": e, "modalities": list(mods), "init": cfg.init if e != "scratch" else "none",
                   "arch": config_to_dict(builders.arch_config), "fraction": fraction, "store": str(store.root),
                   "protocol": key_cfg if e != "logreg" else logreg_key}
            exps.append(Experiment(f"{e}-{mname}", build, "train" if e in ("finetune", "scratch") else e,  # type: ignore[arg-type]
                                   DESCRIPTIONS[e], mods, fraction, info, key))
    return exps


def check_folds(store: TokenStore, folds: list[Any], task: Task) -> None:
    """Refuse leaking folds before any training; warn of folds with few training speakers."""
    for f in folds:
        try:
            ids = fold_clips(store, f, task)
        except ValueError as e:
            raise UserError(str(e)) from None
        n_train = len({str(store.speakers[i]) for i in ids["train"]})
        if n_train < MIN_TRAIN_SPEAKERS:
            log.warning("%s trains on %d speaker(s) only (want >= %d): results may not generalise",
                        fold_title(f, len(folds)), n_train, MIN_TRAIN_SPEAKERS)


def results_header(cfg: FinetuneConfig, store: TokenStore, task: Task, folds: list[Any], source: str,
                   window: float) -> dict[str, Any]:
    select = "UAR" if task.kind != "regress" else "CCC"
    return {
        "task": task.kind, "classes": task.classes, "target_names": task.target_names,
        "store": {"path": str(store.root), "num_clips": len(store),
                  "num_speakers": len({c.speaker for c in store.clips}), "modalities": store.modalities,
                  "fingerprints": {m: store.provenance[m]["fingerprint"] for m in store.modalities}},
        "init": cfg.init,
        "protocol": {
            "folds": source, "num_folds": len(folds),
            "description": (f"{len(folds)} speaker-independent folds from {source}; per fold the epoch with "
                            f"the best validation {select} (validation speakers only) is kept and the test "
                            f"speakers are scored once, every {window:g}-s window of a clip averaged."),
            "fold_speakers": [{"index": f.index, "train": f.train, "val": f.val, "test": f.test} for f in folds],
        },
        "config": config_to_dict(cfg),
        "experiments": {},
    }


def run(cfg: FinetuneConfig) -> dict[str, Any]:
    """Run every experiment over every fold, then label efficiency and noise robustness if asked.
    Returns the results dict (also written to OUT/results.json and OUT/results.md)."""
    missing = [k for k in ("tokens", "init", "out") if not getattr(cfg, k)]
    if missing:
        raise UserError(f"missing required setting(s): {', '.join(missing)} (init: a pretrained "
                        "VQ-MAE-AV folder, or init=none for from-scratch only)")
    t0 = time.perf_counter()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    if cfg.seed >= 0:
        cfg.train.seed = cfg.seed
    # under `accelerate launch`: training is data parallel; evaluation and the logistic-regression
    # baseline run on every rank (the same numbers); rank 0 alone logs and writes
    init_distributed_if_launched()
    main_rank = is_main_process()
    if main_rank:
        save_config(cfg, out / "config.yaml")
    else:
        logging.getLogger("vqmae").setLevel(logging.WARNING)
    store = open_store(cfg.tokens)
    try:
        task = infer_task(store, cfg.task)
    except ValueError as e:
        raise UserError(str(e)) from None
    folds, folds_source = load_folds(cfg, store, out)
    from vqmae.vssl.harness import check_vssl_settings, is_vssl_folder

    if cfg.init not in ("", "none") and is_vssl_folder(cfg.init):
        check_vssl_settings(cfg, cfg.init)  # the VSSL encoder reads audio only
    builders = Builders(cfg.init, store, task, cfg.head, cfg.arch, cfg.window_seconds, cfg.speaker_norm,
                        cfg.code_readout, cfg.codebook_init)
    if cfg.window_seconds and abs(cfg.window_seconds - builders.window_seconds) > 1e-9:
        raise UserError(f"window_seconds={cfg.window_seconds} but the encoder takes {builders.window_seconds:g}-s windows")
    results = results_header(cfg, store, task, folds, folds_source, builders.window_seconds)
    check_folds(store, folds, task)

    def run_all(exps: list[Experiment], folder: Path, suffix: str = "") -> dict[str, dict[str, Any]]:
        return {e.name: run_experiment(e, store, folds, task, cfg, folder / f"{e.name}{suffix}",
                                       cfg.save_models, cfg.resume) for e in exps}

    for exp in make_experiments(cfg, builders, store, task):
        r = run_all([exp], out)[exp.name]
        if main_rank:
            confusion_png(r, task, out / f"confusion_{exp.name}.png", out)
        results["experiments"][exp.name] = r
        log.info("%s: %s", exp.name, ", ".join(f"{m} {fmt_summary(r['summary'], m)}"
                                              for m in metrics_for_task(task.kind)))
        for w in dict.fromkeys(r.get("warnings", [])):
            log.warning("%s: %s", exp.name, w)
        if main_rank:
            write_results(out, results)  # partial results stay readable
    results["missing_modality"] = missing_modality_rows(results["experiments"])
    if cfg.label_fractions:
        results["label_efficiency"] = label_efficiency(cfg, builders, store, task, out, results, run_all)
        if main_rank:
            write_results(out, results)
    if cfg.noise and main_rank:  # evaluation of the saved fold models only: rank 0 does it
        results["noise"] = noise_robustness(cfg, store, task, folds, out, results)
    results["seconds"] = time.perf_counter() - t0
    if main_rank:
        write_results(out, results)
        write_fold_cards(out, results)  # each fold model's README.md gets the results table
    barrier()
    log.info("finetune: done in %.0f s; results in %s", results["seconds"], out / "results.md")
    return results


def label_efficiency(cfg: FinetuneConfig, builders: Builders, store: TokenStore, task: Task, out: Path,
                     results: dict[str, Any], run_all: Any) -> dict[str, Any]:
    """Fine-tune with fractions of the training labels, pretrained vs scratch → table + plot."""
    from vqmae.evaluation.plots import plot_label_efficiency

    mname = cfg.label_modalities or cfg.modalities[0]
    rows = []
    for frac in sorted(set(float(f) for f in cfg.label_fractions)):
        for exp in make_experiments(cfg, builders, store, task, frac, list(cfg.label_experiments), [mname]):
            same = results["experiments"].get(exp.name)
            if frac == 1.0 and same is not None:
                r = same  # the full-label run is the main experiment
            else:
                r = run_all([exp], out / "label_efficiency", f"_{frac:g}")[exp.name]
            rows.append({"experiment": exp.name, "fraction": frac, "summary": r["summary"],
                         "n_train_mean": float(sum(f["n_train"] for f in r["folds"]) / len(r["folds"]))})
    path = out / "label_efficiency.png"
    if is_main_process():
        path = plot_label_efficiency(rows, path, task.headline,
                                     chance=1.0 / task.num_classes if task.num_classes else None)
    return {"metric": task.headline, "modalities": mname, "rows": rows, "plot": path.name}
