"""``vqmae finetune``: fine-tune and evaluate classifiers over speaker-independent folds.

    vqmae finetune --tokens STORE --init MAE_DIR --folds FOLDS.json --out DIR \\
        [modalities=audio,visual,av] [experiments=finetune,scratch,logreg] [init=none] \\
        [label_fractions=0.01,0.05,0.1,0.25,1] [noise=white,babble] [preset=demo]

Every experiment × modality set runs every fold (train on the training speakers with random
windows, pick the epoch on the validation speakers, test once on the test speakers with all
windows of each clip averaged) and lands in ``DIR/<experiment>-<modalities>/fold_<k>/``
(``model/``, ``predictions.jsonl``, ``metrics.jsonl``, ``train.log``, ``fold_result.json``).
``DIR/results.json`` and ``DIR/results.md`` hold per-fold results and mean ± std; PNGs hold the
confusion matrices, the label-efficiency curve and the noise curves. A rerun reuses finished folds.

Experiments: ``finetune`` (the pretrained encoder, all weights trained), ``scratch`` (the same
architecture from random init), ``probe`` (pretrained encoder frozen, head trained), ``logreg``
(scikit-learn logistic regression on frozen mean-pooled features). ``init=none``: no pretrained
model; the architecture comes from ``arch`` (an MAE preset fitted to the store) and only
``scratch`` runs.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqmae.config import config_to_dict
from vqmae.evaluation.protocol import (
    Experiment,
    ProtocolConfig,
    Task,
    evaluate_model,
    fold_clips,
    infer_task,
    run_experiment,
)
from vqmae.evaluation.results import summarize, write_results
from vqmae.pipelines.common import UserError, stage_main
from vqmae.runs import log
from vqmae.training import barrier, init_distributed_if_launched, is_main_process

MODALITY_SETS: dict[str, tuple[str, ...]] = {"audio": ("audio",), "visual": ("visual",),
                                             "av": ("audio", "visual")}
EXPERIMENTS = ("finetune", "scratch", "probe", "logreg")
DESCRIPTIONS = {
    "finetune": "pretrained VQ-MAE-AV, fine-tuned",
    "scratch": "same architecture, random init (supervised from scratch)",
    "probe": "pretrained encoder frozen, attention head trained",
    "logreg": "logistic regression on frozen mean-pooled features",
}

# Named settings for `preset=NAME` (applied before config files and command-line overrides).
PRESETS: dict[str, dict[str, Any]] = {
    # the published fine-tuning recipe: AdamW 1e-4, batch 8, random 2-s crops
    "paper": {},
    # the embedded demo corpus on a 2-core CPU (6 runs × 3 folds in a few minutes)
    "demo": {"train": {"epochs": 3, "batch_size": 16, "lr": 1e-3, "warmup_epochs": 0.5,
                       "log_every": 20}},
}


@dataclass
class FinetuneConfig(ProtocolConfig):
    """Settings of ``vqmae finetune`` (plus the protocol settings it shares with evaluate)."""

    tokens: str = ""
    """Token store (vqmae tokenize)."""
    init: str = ""
    """Pretrained VQ-MAE-AV folder (vqmae pretrain), or 'none' to train from scratch only."""
    folds: str = ""
    """folds.json (vqmae prepare); '' = the one beside the store's manifest, else made here
    (fold_protocol, num_folds, fold_seed) and written to OUT/folds.json."""
    out: str = ""
    modalities: list[str] = field(default_factory=lambda: ["av"])
    """Input sets to run: audio | visual | av (each a separate model)."""
    experiments: list[str] = field(default_factory=lambda: ["finetune"])
    """finetune | scratch | probe | logreg (see the module doc)."""
    arch: str = "demo"
    """MAE preset for init=none (fitted to the store's token shapes)."""
    fold_protocol: str = "kfold"
    num_folds: int = 5
    fold_seed: int = 0
    max_folds: int = 0
    """Run only the first N folds (0 = all; quick runs — results then cover fewer speakers)."""
    label_fractions: list[float] = field(default_factory=list)
    """Label efficiency: fractions of the training labels (e.g. 0.01,0.05,0.1,0.25,1); [] = skip."""
    label_experiments: list[str] = field(default_factory=lambda: ["finetune", "scratch"])
    label_modalities: str = ""
    """Input set of the label-efficiency runs ('' = the first of modalities)."""
    noise: list[str] = field(default_factory=list)
    """Noise robustness: white and/or babble ([] = skip); needs the media files and the audio tokenizer."""
    snr_db: list[float] = field(default_factory=lambda: [20.0, 10.0, 5.0, 0.0])
    noise_experiments: list[str] = field(default_factory=list)
    """Experiments (e.g. finetune-av) evaluated in noise; [] = every trained one with audio input."""
    babble_talkers: int = 6
    seed: int = -1
    """Seed of the training windows, head init and label subsets: sets train.seed (-1 = keep train.seed)."""
    save_models: bool = True
    resume: bool = True
    """Reuse folds finished by an earlier run with the same settings."""
    preset: str = ""
    """Named settings applied first: paper | demo (recorded here)."""


# ----------------------------------------------------------------------------------- setup


def _open_store(path: str):
    from vqmae.data.token_store import StoreError, TokenStore

    try:
        return TokenStore.open(path)
    except StoreError as e:
        raise UserError(str(e)) from None


def load_folds(cfg: FinetuneConfig, store, out: Path) -> tuple[list[Any], str]:
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


def _modalities(name: str, store) -> tuple[str, ...]:
    if name not in MODALITY_SETS:
        raise UserError(f"modalities '{name}': choose from {', '.join(MODALITY_SETS)}")
    mods = MODALITY_SETS[name]
    missing = [m for m in mods if m not in store.modalities]
    if missing:
        raise UserError(f"{store.root}: holds no {', '.join(missing)} tokens (it has {', '.join(store.modalities)})")
    return mods


def _check_mae_fits_store(mae_cfg, store, init: str) -> None:
    """The pretrained model must have seen tokens of the same shape and codebook as the store."""
    for m in mae_cfg.modalities:
        if m not in store.modalities:
            continue
        spec = mae_cfg.spec(m)
        shape, K = tuple(store.token_shape(m)), store.codebook_size(m)
        if tuple(spec.token_shape) != shape or spec.codebook_size != K:
            raise UserError(f"{init}: pretrained on {m} tokens {spec.token_shape} with {spec.codebook_size} "
                            f"codes, but {store.root} holds {shape} with {K} codes (another tokenizer)")


def _mae_fingerprints(init: str) -> dict[str, str]:
    """Tokenizer fingerprints a pretrained folder records (``vqmae pretrain`` writes
    ``token_store.provenance.<modality>.fingerprint``), checked against the store's."""
    from vqmae.checkpoint import read_model_config

    meta = read_model_config(init)
    prov = (meta.get("token_store") or {}).get("provenance") or {}
    return {m: p["fingerprint"] for m, p in prov.items() if isinstance(p, dict) and isinstance(p.get("fingerprint"), str)}


def model_info(store, task: Task, init: str, window_seconds: float) -> dict[str, Any]:
    """What a saved fold model records so that ``evaluate`` and ``predict`` can use it alone."""
    return {
        "task": {"kind": task.kind, "classes": task.classes, "target_names": task.target_names},
        "tokenizers": {m: {"dir": store.provenance[m].get("tokenizer_dir", ""),
                           "fingerprint": store.provenance[m]["fingerprint"],
                           "frames_per_second": store.provenance[m]["frames_per_second"]}
                       for m in store.modalities},
        "clip_config": dict(store.meta.get("clip_config", {})),
        "store": str(store.root),
        "init": init,
        "window_seconds": window_seconds,
    }


class Builders:
    """Fresh models for each fold: pretrained (from ``init``) or random init of the same architecture."""

    def __init__(self, cfg: FinetuneConfig, store, task: Task):
        from vqmae.mae import cfg_for_store
        from vqmae.mae.classifier import mae_config_of

        self.cfg, self.store, self.task = cfg, store, task
        self.pretrained = cfg.init not in ("", "none")
        if self.pretrained:
            if not Path(cfg.init).is_dir():
                raise UserError(f"--init {cfg.init}: not a folder (give a `vqmae pretrain` output or init=none)")
            try:
                self.mae_cfg = mae_config_of(cfg.init)
            except ValueError as e:
                raise UserError(str(e)) from None
            _check_mae_fits_store(self.mae_cfg, store, cfg.init)
            for m, fp in _mae_fingerprints(cfg.init).items():
                if m in store.modalities and store.provenance[m]["fingerprint"] != fp:
                    raise UserError(f"{cfg.init} was pretrained on {m} tokens of tokenizer {fp[:12]}…, "
                                    f"{store.root} holds tokens of {store.provenance[m]['fingerprint'][:12]}…")
        else:
            window = cfg.window_seconds or 2.0
            self.mae_cfg = cfg_for_store(store.provenance, preset=cfg.arch, window_seconds=window)

    @property
    def window_seconds(self) -> float:
        return float(self.mae_cfg.window_seconds)

    def __call__(self, modalities: tuple[str, ...], pretrained: bool, head: str | None = None
                 ) -> Callable[[], Any]:
        from vqmae.mae.classifier import ClassifierConfig, EmotionClassifier, encoder_config_for

        t = self.task
        fields = dict(modalities=modalities, num_classes=t.num_classes, num_targets=t.num_targets,
                      classes=list(t.classes), target_names=list(t.target_names),
                      head=head or self.cfg.head)
        missing = [m for m in modalities if m not in self.mae_cfg.modalities]
        if missing:
            raise UserError(f"the encoder has no {', '.join(missing)} input (modalities "
                            f"{', '.join(self.mae_cfg.modalities)})")

        def build():
            if pretrained:
                model, report = EmotionClassifier.from_mae(self.cfg.init, **fields)
                log.debug("%s", report.summary())
                return model
            enc = encoder_config_for(self.mae_cfg, modalities)
            return EmotionClassifier(ClassifierConfig(encoder=enc, **fields))

        return build


# ------------------------------------------------------------------------------------- run


def _experiments(cfg: FinetuneConfig, builders: Builders, store, task: Task, fraction: float = 1.0,
                 names: list[str] | None = None, modality_names: list[str] | None = None) -> list[Experiment]:
    info = model_info(store, task, cfg.init if builders.pretrained else "none", builders.window_seconds)
    wanted = list(names or cfg.experiments)
    bad = [e for e in wanted if e not in EXPERIMENTS]
    if bad:
        raise UserError(f"experiments {bad}: choose from {', '.join(EXPERIMENTS)}")
    if not builders.pretrained:
        if [e for e in wanted if e != "scratch"]:
            log.info("init=none: running 'scratch' only (no pretrained encoder for %s)",
                     ", ".join(e for e in wanted if e != "scratch"))
        wanted = ["scratch"]
    key_cfg = {k: v for k, v in config_to_dict(cfg).items() if k in ProtocolConfig.__dataclass_fields__}
    exps = []
    for mname in modality_names or cfg.modalities:
        mods = _modalities(mname, store)
        for e in dict.fromkeys(wanted):
            name = f"{e}-{mname}"
            build = builders(mods, pretrained=e != "scratch", head="mean" if e == "logreg" else None)
            key = {"experiment": e, "modalities": list(mods), "init": cfg.init if e != "scratch" else "none",
                   "arch": config_to_dict(builders.mae_cfg), "fraction": fraction, "store": str(store.root),
                   "protocol": key_cfg if e != "logreg" else {k: key_cfg[k] for k in ("task", "window_seconds",
                                                                                       "eval_stride_seconds")}}
            exps.append(Experiment(name, build, "train" if e in ("finetune", "scratch") else e,
                                   DESCRIPTIONS[e], mods, fraction, info, key))
    return exps


def run(cfg: FinetuneConfig) -> dict[str, Any]:
    """Run every experiment over every fold, then label efficiency and noise robustness if asked.
    Returns the results dict (also written to OUT/results.json and OUT/results.md)."""
    if not cfg.tokens or not cfg.out:
        raise UserError("--tokens and --out are required (and --init, or init=none)")
    if not cfg.init:
        raise UserError("--init is required: a pretrained VQ-MAE-AV folder, or init=none for from-scratch only")
    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    from vqmae.config import save_config

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
    store = _open_store(cfg.tokens)
    try:
        task = infer_task(store, cfg.task)
    except ValueError as e:
        raise UserError(str(e)) from None
    folds, folds_source = load_folds(cfg, store, out)
    builders = Builders(cfg, store, task)
    if cfg.window_seconds and abs(cfg.window_seconds - builders.window_seconds) > 1e-9:
        raise UserError(f"window_seconds={cfg.window_seconds} but the encoder takes {builders.window_seconds:g}-s windows")
    results: dict[str, Any] = {
        "task": task.kind, "classes": task.classes, "target_names": task.target_names,
        "store": {"path": str(store.root), "num_clips": len(store),
                  "num_speakers": len({c.speaker for c in store.clips}), "modalities": store.modalities,
                  "fingerprints": {m: store.provenance[m]["fingerprint"] for m in store.modalities}},
        "init": cfg.init,
        "protocol": {
            "folds": folds_source, "num_folds": len(folds),
            "description": (f"{len(folds)} speaker-independent folds from {folds_source}; per fold the "
                            f"epoch with the best validation "
                            f"{'UAR' if task.kind != 'regress' else 'CCC'} (validation speakers only) is "
                            f"kept and the test speakers are scored once, every "
                            f"{builders.window_seconds:g}-s window of a clip averaged."),
            "fold_speakers": [{"index": f.index, "train": f.train, "val": f.val, "test": f.test} for f in folds],
        },
        "config": config_to_dict(cfg),
        "experiments": {},
    }
    for f in folds:  # refuse leaking folds before any training
        try:
            fold_clips(store, f, task)
        except ValueError as e:
            raise UserError(str(e)) from None

    exps = _experiments(cfg, builders, store, task)
    for exp in exps:
        r = run_experiment(exp, store, folds, task, cfg, out / exp.name, cfg.save_models, cfg.resume)
        if main_rank:
            _confusion_png(r, task, out / f"confusion_{exp.name}.png", out)
        results["experiments"][exp.name] = r
        log.info("%s: %s", exp.name, _headline(r, task))
        if main_rank:
            write_results(out, results)  # partial results stay readable
    results["missing_modality"] = _missing_modality_rows(results["experiments"])

    if cfg.label_fractions:
        results["label_efficiency"] = label_efficiency(cfg, builders, store, task, folds, out, results)
        if main_rank:
            write_results(out, results)
    if cfg.noise and main_rank:  # evaluation of the saved fold models only: rank 0 does it
        results["noise"] = noise_robustness(cfg, store, task, folds, out, results)
    results["seconds"] = time.perf_counter() - t0
    if main_rank:
        write_results(out, results)
    barrier()
    log.info("finetune: done in %.0f s; results in %s", results["seconds"], out / "results.md")
    return results


def _headline(r: dict[str, Any], task: Task) -> str:
    from vqmae.evaluation.results import fmt_summary, metrics_for_task

    return ", ".join(f"{m} {fmt_summary(r['summary'], m)}" for m in metrics_for_task(task.kind))


def _confusion_png(r: dict[str, Any], task: Task, path: Path, out: Path) -> None:
    if r.get("confusion") is None:
        return
    from vqmae.evaluation.plots import plot_confusion

    plot_confusion(r["confusion"], task.classes, path, f"{r['name']} (all test folds)")
    r["confusion_png"] = str(path.relative_to(out))


def _missing_modality_rows(experiments: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, r in experiments.items():
        if len(r.get("modalities", [])) < 2:
            continue
        per = [f.get("test_missing_modality") or {} for f in r["folds"]]
        for m in r["modalities"]:
            vals = [p[m] for p in per if m in p]
            if vals:
                rows.append({"experiment": name, "modalities": [m], "summary": summarize(vals)})
    return rows


def label_efficiency(cfg: FinetuneConfig, builders: Builders, store, task: Task, folds, out: Path,
                     results: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune with fractions of the training labels, pretrained vs scratch → table + plot."""
    from vqmae.evaluation.plots import plot_label_efficiency

    mname = cfg.label_modalities or cfg.modalities[0]
    rows = []
    for frac in sorted(set(float(f) for f in cfg.label_fractions)):
        if not 0 < frac <= 1:
            raise UserError(f"label_fractions: {frac} is not in (0, 1]")
        for exp in _experiments(cfg, builders, store, task, frac, cfg.label_experiments, [mname]):
            same = results["experiments"].get(exp.name)
            if frac == 1.0 and same is not None:
                r = same  # the full-label run is the main experiment
            else:
                r = run_experiment(exp, store, folds, task, cfg,
                                   out / "label_efficiency" / f"{exp.name}_{frac:g}", cfg.save_models, cfg.resume)
            rows.append({"experiment": exp.name, "fraction": frac, "summary": r["summary"],
                         "n_train_mean": float(sum(f["n_train"] for f in r["folds"]) / len(r["folds"]))})
    metric = task.headline
    path = out / "label_efficiency.png"
    if is_main_process():
        path = plot_label_efficiency(rows, path, metric,
                                     chance=1.0 / task.num_classes if task.num_classes else None)
    return {"metric": metric, "modalities": mname, "rows": rows, "plot": path.name}


def noise_robustness(cfg: FinetuneConfig, store, task: Task, folds, out: Path,
                     results: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the saved fold models of the trained experiments with noisy audio → table + plot."""
    from vqmae.data.token_store import StoreError
    from vqmae.evaluation.noise import NOISE_TYPES, NoisyAudioTokens
    from vqmae.evaluation.plots import plot_noise
    from vqmae.mae.classifier import load_classifier

    bad = [n for n in cfg.noise if n not in NOISE_TYPES]
    if bad:
        raise UserError(f"noise {bad}: choose from {', '.join(NOISE_TYPES)}")
    names = cfg.noise_experiments or [n for n, r in results["experiments"].items()
                                      if r["kind"] != "logreg" and "audio" in r["modalities"]]
    names = [n for n in names if n in results["experiments"]]
    if not names:
        log.warning("noise robustness: no trained experiment with audio input to evaluate")
        return {}
    try:
        noisy = NoisyAudioTokens(store, seed=cfg.train.seed, talkers=cfg.babble_talkers)
    except (StoreError, FileNotFoundError) as e:
        raise UserError(f"noise robustness: {e}") from None
    split = {f.index: fold_clips(store, f, task) for f in folds}
    tested = sorted({i for s in split.values() for i in s["test"]})
    agreement = noisy.check_clean(tested)
    log.info("noise: clean re-tokenization reproduces %.1f %% of the stored audio tokens", 100 * agreement)
    rows = []
    for name in names:
        r = results["experiments"][name]
        per_cond: dict[tuple[str, float], list[dict[str, float]]] = {}
        for f in folds:
            folder = out / name / f"fold_{f.index}" / "model"
            if not folder.is_dir():
                log.warning("noise: %s has no saved model (save_models=false?); skipped", folder)
                continue
            model, _ = load_classifier(folder)
            test = split[f.index]["test"]
            for kind in cfg.noise:
                for snr in cfg.snr_db:
                    noisy_store = noisy.store_for(kind, snr, test, pool=tested)
                    m, _, _ = evaluate_model(model, noisy_store, range(len(test)), task, cfg.window_seconds,
                                             cfg.eval_stride_seconds, cfg.eval_batch_size)
                    per_cond.setdefault((kind, float(snr)), []).append(m)
        rows.append({"experiment": name, "noise": "clean", "snr_db": math.inf, "summary": r["summary"]})
        for (kind, snr), ms in per_cond.items():
            rows.append({"experiment": name, "noise": kind, "snr_db": snr, "summary": summarize(ms)})
        log.info("noise: %s done", name)
    metric = task.headline
    plot = plot_noise(rows, out / "noise.png", metric,
                      chance=1.0 / task.num_classes if task.num_classes else None)
    return {"metric": metric, "rows": rows, "plot": plot.name, "clean_retokenized_agreement": agreement,
            "recipe": f"white / babble ({cfg.babble_talkers} talkers of other speakers) noise added to the "
                      "test audio at each SNR, peak-normalised, re-tokenized with the store's audio tokenizer"}


# ------------------------------------------------------------------------------------ main


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_base(preset: str = "") -> dict[str, Any]:
    """Every setting's default as a nested dict, with ``preset`` applied. Used as the base of the
    command line, so that ``train.epochs=3`` keeps the other fine-tuning defaults of ``train``."""
    if preset and preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}' (known: {', '.join(PRESETS)})")
    base = config_to_dict(FinetuneConfig())
    if preset:
        base = _deep_merge(base, {**PRESETS[preset], "preset": preset})
    return base


def make_config(preset: str = "", **overrides: Any) -> FinetuneConfig:
    """A :class:`FinetuneConfig` from a preset plus (nested) overrides, e.g.
    ``make_config("demo", tokens=..., init=..., out=..., train={"epochs": 3})``."""
    from vqmae.config import config_from_dict

    return config_from_dict(FinetuneConfig, _deep_merge(config_base(preset), overrides))


def _preset_from_argv(argv: list[str]) -> str:
    name = ""
    for i, a in enumerate(argv):
        if a.startswith("preset=") or a.startswith("--preset="):
            name = a.split("=", 1)[1]
        elif a == "--preset" and i + 1 < len(argv):
            name = argv[i + 1]
    return name


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        base = config_base(_preset_from_argv(argv))
    except UserError as e:
        print(f"vqmae finetune: error: {e}", file=sys.stderr)
        return 2
    return stage_main("finetune", __doc__ or "", FinetuneConfig, run, argv, base=base)


if __name__ == "__main__":
    raise SystemExit(main())
