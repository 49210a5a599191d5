"""Result aggregation (per fold → mean ± std) and the ``results.json`` / ``results.md`` writers.

A fold result is a plain dict (JSON-safe)::

    {"fold": 0, "train_speakers": [...], "val_speakers": [...], "test_speakers": [...],
     "n_train": 120, "n_val": 30, "n_test": 60, "best_epoch": 3,
     "val": {"war": .., "uar": .., "macro_f1": ..}, "test": {...}, "confusion": [[..]], "seconds": 12.3}

``summarize`` turns the folds' ``test`` metrics into ``{metric: {"mean", "std", "n", "values"}}``
where ``std`` is the sample standard deviation over folds (ddof = 1; 0 for a single fold).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vqmae.io import atomic_write_text, write_json

# metric name -> (column title, shown as a percentage)
METRIC_TITLES: dict[str, tuple[str, bool]] = {
    "war": ("WAR", True),
    "uar": ("UAR", True),
    "macro_f1": ("macro-F1", True),
    "ccc": ("CCC", False),
    "ccc_arousal": ("CCC arousal", False),
    "ccc_valence": ("CCC valence", False),
}

CLASSIFICATION_METRICS = ("war", "uar", "macro_f1")
REGRESSION_METRICS = ("ccc", "ccc_arousal", "ccc_valence")


def summarize(per_fold: Iterable[Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """Mean ± sample std of every numeric metric over folds (NaN values are left out)."""
    rows = list(per_fold)
    names: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in names and isinstance(v, (int, float)) and not isinstance(v, bool):
                names.append(k)
    out: dict[str, dict[str, Any]] = {}
    for k in names:
        values = [float(r[k]) for r in rows if k in r and r[k] is not None]
        finite = [v for v in values if math.isfinite(v)]
        mean = float(np.mean(finite)) if finite else float("nan")
        std = float(np.std(finite, ddof=1)) if len(finite) > 1 else (0.0 if finite else float("nan"))
        out[k] = {"mean": mean, "std": std, "n": len(finite), "values": values}
    return out


def fmt_metric(name: str, mean: float, std: float | None = None) -> str:
    """``"85.1 ± 2.3"`` (percent for classification metrics) or ``"0.712 ± 0.031"`` (CCC)."""
    if mean is None or not math.isfinite(mean):
        return "–"
    pct = METRIC_TITLES.get(name, (name, False))[1]
    scale, digits = (100.0, 1) if pct else (1.0, 3)
    s = f"{mean * scale:.{digits}f}"
    if std is not None and math.isfinite(std):
        s += f" ± {std * scale:.{digits}f}"
    return s


def fmt_summary(summary: Mapping[str, Mapping[str, Any]], name: str) -> str:
    if name not in summary:
        return "–"
    return fmt_metric(name, summary[name]["mean"], summary[name]["std"])


def metric_title(name: str) -> str:
    title, pct = METRIC_TITLES.get(name, (name, False))
    return f"{title} (%)" if pct else title


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(str(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def metrics_for_task(task: str) -> tuple[str, ...]:
    """The headline metrics of a task (``classify``, ``regress`` or ``both``)."""
    if task == "regress":
        return REGRESSION_METRICS
    if task == "both":
        return CLASSIFICATION_METRICS + ("ccc",)
    return CLASSIFICATION_METRICS


def _fold_rows(folds: Sequence[Mapping[str, Any]], metrics: Sequence[str], val_metric: str) -> list[list[Any]]:
    rows = []
    for f in folds:
        test = f.get("test", {})
        val = f.get("val", {})
        rows.append([
            f["fold"] + 1 if isinstance(f.get("fold"), int) else "?",  # 1-based, as the logs
            ", ".join(f.get("test_speakers", [])),
            f.get("n_test", ""),
            "–" if f.get("best_epoch") is None else f["best_epoch"] + 1,
            *[fmt_metric(m, test.get(m, float("nan"))) for m in metrics],
            fmt_metric(val_metric, val.get(val_metric, float("nan"))),
        ])
    return rows


def chance_levels(experiments: Mapping[str, Any]) -> dict[str, float] | None:
    """Chance UAR (1 / classes) and WAR (majority class of the test clips, from the summed
    confusion matrix of the first classification experiment); None without classes."""
    for e in experiments.values():
        cm = e.get("confusion")
        if cm:
            counts = np.asarray(cm, dtype=np.float64).sum(axis=1)  # rows: true classes
            if counts.sum() > 0:
                return {"classes": int(len(counts)), "uar": 1.0 / len(counts),
                        "war": float(counts.max() / counts.sum())}
    return None


def results_markdown(results: Mapping[str, Any]) -> str:
    """The human report of a ``results.json`` dict: main table, per-fold tables, extras."""
    task = results.get("task", "classify")
    metrics = metrics_for_task(task)
    val_metric = "ccc" if task == "regress" else "uar"  # what the epoch was selected on
    train_metric = "ccc" if task == "regress" else "war"
    exps: Mapping[str, Any] = results.get("experiments", {})
    out = ["# Fine-tuning results", ""]
    store = results.get("store", {})
    if store:
        out.append(f"Token store: `{store.get('path', '')}` — {store.get('num_clips', '?')} clips, "
                   f"{store.get('num_speakers', '?')} speakers, classes: "
                   f"{', '.join(results.get('classes', [])) or '–'}.")
    prot = results.get("protocol", {})
    if prot:
        out.append(f"Protocol: {prot.get('description', '')}")
    out.append("")
    if exps:
        out += ["## Test results (mean ± std over folds)", ""]
        rows = []
        for name, e in exps.items():
            s = e.get("summary", {})
            fit = e.get("summary_train") or {}
            train_col = fmt_summary(fit, train_metric) if train_metric in fit else "–"
            rows.append([name, e.get("description", ""), "+".join(e.get("modalities", [])), train_col,
                         *[fmt_summary(s, m) for m in metrics], len(e.get("folds", []))])
        out.append(md_table(["experiment", "what", "modalities", f"train {metric_title(train_metric)}",
                             *[metric_title(m) for m in metrics], "folds"], rows))
        out.append("")
        out.append(f"train {metric_title(train_metric)}: the selected model on its own training "
                   "speakers (how well it fits); the other columns are the unseen test speakers. "
                   "Std is the sample standard deviation over folds. Each fold's epoch was selected "
                   "on its validation speakers only; test speakers were scored once, averaging "
                   "all deterministic windows of each clip.")
        chance = chance_levels(exps)
        if chance:
            out.append("")
            out.append(f"Chance: UAR {100 * chance['uar']:.1f} % (1 / {chance['classes']} classes); "
                       f"WAR {100 * chance['war']:.1f} % (always the most frequent test class). "
                       "Rough guide: a row whose mean minus one std does not clear these is not "
                       "distinguishable from chance over these folds.")
        out.append("")
        for name, e in exps.items():
            folds = e.get("folds", [])
            if not folds:
                continue
            out += [f"### {name}: per fold", ""]
            out.append(md_table(["fold", "test speakers", "test clips", "selected epoch",
                                 *[f"test {metric_title(m)}" for m in metrics],
                                 f"val {metric_title(val_metric)}"], _fold_rows(folds, metrics, val_metric)))
            warnings = list(dict.fromkeys(w for f in folds for w in f.get("warnings", [])))
            if warnings:
                out += [""] + [f"> **Warning:** {w}" for w in warnings]
            if e.get("confusion_png"):
                out += ["", f"![confusion matrix of {name}]({e['confusion_png']})"]
            out.append("")
    missing = results.get("missing_modality", [])
    if missing:
        out += ["## Audiovisual models evaluated with a modality missing", ""]
        rows = [[r["experiment"], "+".join(r["modalities"]), *[fmt_summary(r["summary"], m) for m in metrics]]
                for r in missing]
        out.append(md_table(["model", "given", *[metric_title(m) for m in metrics]], rows))
        out.append("")
    le = results.get("label_efficiency")
    if le and le.get("rows"):
        out += label_efficiency_markdown(le, metrics)
    nz = results.get("noise")
    if nz and nz.get("rows"):
        out += noise_markdown(nz, metrics)
    return "\n".join(out).rstrip() + "\n"


def label_efficiency_markdown(le: Mapping[str, Any], metrics: Sequence[str]) -> list[str]:
    metric = le.get("metric", metrics[0])
    exps = list(dict.fromkeys(r["experiment"] for r in le["rows"]))
    fracs = sorted({float(r["fraction"]) for r in le["rows"]})
    by = {(r["experiment"], float(r["fraction"])): r for r in le["rows"]}
    rows = []
    for f in fracs:
        cells = []
        for e in exps:
            r = by.get((e, f))
            cells.append(fmt_summary(r["summary"], metric) if r else "–")
        n = next((by[(e, f)].get("n_train_mean") for e in exps if (e, f) in by), "")
        rows.append([f"{f * 100:g} %", n if n == "" else f"{n:.0f}", *cells])
    out = [f"## Label efficiency (test {metric_title(metric)}, mean ± std over folds)", "",
           md_table(["training labels", "clips per fold", *exps], rows), ""]
    if le.get("plot"):
        out += [f"![label efficiency]({le['plot']})", ""]
    return out


def noise_markdown(nz: Mapping[str, Any], metrics: Sequence[str]) -> list[str]:
    metric = nz.get("metric", metrics[0])
    exps = list(dict.fromkeys(r["experiment"] for r in nz["rows"]))
    conds = list(dict.fromkeys((r["noise"], r["snr_db"]) for r in nz["rows"]))
    by = {(r["experiment"], r["noise"], r["snr_db"]): r for r in nz["rows"]}
    rows = []
    for noise, snr in conds:
        label = "clean" if noise == "clean" else f"{noise} {snr:g} dB"
        rows.append([label, *[fmt_summary(by[(e, noise, snr)]["summary"], metric)
                              if (e, noise, snr) in by else "–" for e in exps]])
    out = [f"## Noise robustness (test {metric_title(metric)}, noise added to the audio and "
           "re-tokenized)", "", md_table(["condition", *exps], rows), ""]
    if nz.get("plot"):
        out += [f"![noise robustness]({nz['plot']})", ""]
    return out


def write_results(out_dir: str | Path, results: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    j = write_json(out_dir / "results.json", _json_safe(results))
    m = atomic_write_text(out_dir / "results.md", results_markdown(results))
    return j, m


def _json_safe(o: Any) -> Any:
    """NaN/inf → None (strict JSON), numpy → Python."""
    if isinstance(o, Mapping):
        return {str(k): _json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_safe(v) for v in o]
    if isinstance(o, np.ndarray):
        return _json_safe(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o
