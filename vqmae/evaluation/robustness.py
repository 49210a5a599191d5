"""What the fine-tuned fold models do with degraded input: a modality missing (from the test
runs) and noisy audio (saved fold models re-scored on re-tokenized noisy audio); plus the
confusion-matrix plot of an experiment."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vqmae.data.token_store import StoreError, TokenStore
from vqmae.errors import UserError
from vqmae.evaluation.results import summarize
from vqmae.evaluation.scoring import evaluate_model
from vqmae.evaluation.splits import fold_clips
from vqmae.evaluation.task import Task
from vqmae.runs import log


def confusion_png(r: dict[str, Any], task: Task, path: Path, out: Path) -> None:
    """Plot an experiment's summed confusion matrix; records the file in ``r["confusion_png"]``."""
    if r.get("confusion") is None:
        return
    from vqmae.evaluation.plots import plot_confusion

    plot_confusion(r["confusion"], task.classes, path, f"{r['name']} (all test folds)")
    r["confusion_png"] = str(path.relative_to(out))


def missing_modality_rows(experiments: dict[str, Any]) -> list[dict[str, Any]]:
    """Two-modality experiments tested with one modality only: one row per (experiment, modality)."""
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


def noise_robustness(cfg: Any, store: TokenStore, task: Task, folds: list[Any], out: Path,
                     results: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the saved fold models of the trained experiments with noisy audio → table + plot.
    ``cfg``: a :class:`~vqmae.evaluation.finetune_job.FinetuneConfig`."""
    from vqmae.evaluation.plots import plot_noise
    from vqmae.vssl.harness import load_fold_model

    names = cfg.noise_experiments or [n for n, r in results["experiments"].items()
                                      if r["kind"] != "logreg" and "audio" in r["modalities"]]
    names = [n for n in names if n in results["experiments"]]
    if not names:
        log.warning("noise robustness: no trained experiment with audio input to evaluate")
        return {}
    split = {f.index: fold_clips(store, f, task) for f in folds}
    tested = sorted({i for s in split.values() for i in s["test"]})
    noisy = NoisyInputs(store, cfg.train.seed, cfg.babble_talkers, tested)
    rows = []
    for name in names:
        r = results["experiments"][name]
        per_cond: dict[tuple[str, float], list[dict[str, float]]] = {}
        for f in folds:
            folder = out / name / f"fold_{f.index}" / "model"
            if not folder.is_dir():
                log.warning("noise: %s has no saved model (save_models=false?); skipped", folder)
                continue
            model, _ = load_fold_model(folder)
            test = split[f.index]["test"]
            for kind in cfg.noise:
                for snr in cfg.snr_db:
                    m = noisy.evaluate(model, kind, snr, test, task, cfg.window_seconds, cfg.eval_stride_seconds,
                                       cfg.eval_batch_size)
                    per_cond.setdefault((kind, float(snr)), []).append(m)
        rows.append({"experiment": name, "noise": "clean", "snr_db": math.inf, "summary": r["summary"]})
        for (kind, snr), ms in per_cond.items():
            rows.append({"experiment": name, "noise": kind, "snr_db": snr, "summary": summarize(ms)})
        log.info("noise: %s done", name)
    metric = task.headline
    plot = plot_noise(rows, out / "noise.png", metric,
                      chance=1.0 / task.num_classes if task.num_classes else None)
    how = [w for w, used in (("re-tokenized with the store's audio tokenizer", noisy.tokens is not None),
                             ("read as the waveform by the waveform (VSSL) models", noisy.waves is not None)) if used]
    recipe = (f"white / babble ({cfg.babble_talkers} talkers of other speakers) noise added to the test audio "
              f"at each SNR, peak-normalised, {'; '.join(how) or 're-tokenized'}")
    return {"metric": metric, "rows": rows, "plot": plot.name, "clean_retokenized_agreement": noisy.agreement,
            "recipe": recipe}


class NoisyInputs:
    """Noisy test inputs for every kind of fold model: re-tokenized noisy audio in an overlay of
    the store (token models), or the noisy waveform (models reading ``wave``); each made on first
    use, with the same seeded noise. ``evaluate(...)`` scores a model on them."""

    def __init__(self, store: TokenStore, seed: int, talkers: int, tested: list[int] | None = None):
        self.store, self.seed, self.talkers, self.tested = store, seed, talkers, list(tested or [])
        self.tokens: Any = None
        self.waves: Any = None
        self.agreement: float | None = None

    def _make(self, make: Any) -> Any:
        try:
            return make(self.store, seed=self.seed, talkers=self.talkers)
        except (StoreError, FileNotFoundError) as e:
            raise UserError(f"noise robustness: {e}") from None

    def evaluate(self, model: Any, kind: str, snr: float, test: list[int], task: Task, window: float,
                 stride: float, batch_size: int, modalities: Any = None, pool: list[int] | None = None
                 ) -> dict[str, float]:
        """Metrics of ``model`` on the ``test`` clips with ``kind`` noise at ``snr`` dB; babble from
        ``pool`` (default: the clips given at construction)."""
        from vqmae.evaluation.noise import NoisyAudio, NoisyAudioTokens
        from vqmae.vssl.harness import reads_waves
        from vqmae.vssl.wave_dataset import clip_waves

        if reads_waves(model):
            if self.waves is None:
                rate = model.config.encoder.sample_rate
                self.waves = self._make(lambda store, **kw: NoisyAudio(store, clip_waves(store, rate), **kw))

            def load(i: int) -> Any:
                return self.waves.noisy(kind, snr, i, self.tested if pool is None else pool)

            return evaluate_model(model, self.store, test, task, window, stride, batch_size, audio_loader=load)[0]
        if self.tokens is None:
            self.tokens = self._make(NoisyAudioTokens)
            if self.tested:
                self.agreement = self.tokens.check_clean(self.tested)
                log.info("noise: clean re-tokenization reproduces %.1f %% of the stored audio tokens",
                         100 * self.agreement)
        noisy_store = self.tokens.store_for(kind, snr, test, pool=self.tested if pool is None else pool)
        return evaluate_model(model, noisy_store, range(len(test)), task, window, stride, batch_size, modalities)[0]
