"""Model cards: the ``README.md`` of every saved model folder, with hub metadata.

``save_pretrained`` writes it with what the model knows (architecture, config, fingerprint, the
tokenizers and training data its ``config.json`` records); stages add what only they know::

    model.save_pretrained(folder, card={"training_command": "vqmae pretrain ...",
                                        "datasets": ["RAVDESS"], "license": "cc-by-nc-sa-4.0"})
    write_model_card(fold_dir / "model", results=results)   # finetune: adds the results table

The front matter (YAML, read by model hubs) is built with ``huggingface_hub.ModelCardData``:
``library_name: vqmae``, ``tags``, ``license``, ``datasets`` when known, ``base_model`` when the
model was fine-tuned from a hub model, ``pipeline_tag``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CARD_NAME = "README.md"
DEFAULT_LICENSE = "other"

DESCRIPTIONS = {
    "audio-vqvae": ("Audio VQ-VAE tokenizer", "turns 16 kHz speech into discrete codes (one row of codes "
                    "per spectrogram frame); stage one of VQ-MAE-AV."),
    "visual-vqvae": ("Visual VQ-VAE tokenizer", "turns face crops into discrete codes (a grid of codes per "
                     "frame); stage one of VQ-MAE-AV."),
    "vqmae-av": ("VQ-MAE-AV", "a masked autoencoder pretrained on discrete audio and visual tokens "
                 "(self-supervised); its encoder is the backbone of the emotion classifiers."),
    "raw-mae": ("Raw-input MAE", "a masked autoencoder on raw spectrogram / face patches (the baseline "
                "of the discrete-token model)."),
    "vqmae-classifier": ("VQ-MAE-AV emotion classifier", "a VQ-MAE-AV encoder with an attention-pooling "
                         "head, fine-tuned to recognise emotions from speech and faces."),
}
TAGS = {
    "audio-vqvae": ["vq-vae", "tokenizer", "audio"],
    "visual-vqvae": ["vq-vae", "tokenizer", "video", "faces"],
    "vqmae-av": ["masked-autoencoder", "self-supervised", "audio-visual"],
    "raw-mae": ["masked-autoencoder", "self-supervised"],
    "vqmae-classifier": ["emotion-recognition", "audio-visual"],
}


def invocation() -> str:
    """The vqmae command line of this process ('' when it is not a vqmae command)."""
    argv0 = sys.argv[0] if sys.argv else ""
    p = Path(argv0)
    if p.name == "vqmae" or (p.parent.name in ("vqmae", "pipelines") and "vqmae" in p.parts):
        prefix = "vqmae" if p.name in ("vqmae", "__main__.py", "cli.py") else f"python -m vqmae.pipelines.{p.stem}"
        return " ".join([prefix, *map(shlex.quote, sys.argv[1:])])
    return ""


def _hub_ids(meta: Mapping[str, Any]) -> list[str]:
    from vqmae.hub import is_hub_id

    info = meta.get("info") or {}
    init = str(info.get("init") or "")
    return [init] if is_hub_id(init) else []


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def tokenizers_section(meta: Mapping[str, Any]) -> str:
    """Table of the tokenizers a model records: modality, where (bundled folder / hub id /
    path), fingerprint."""
    from vqmae.hub import tokenizer_records

    recs = tokenizer_records(dict(meta))
    if not recs:
        return ""
    lines = [_row(["modality", "tokenizer", "fingerprint", "frames/s"]), _row(["---"] * 4)]
    for m, r in recs.items():
        where = f"`{r['dir']}`" if r.get("dir") else ""
        if r.get("hub_id"):
            where = f"`{r['hub_id']}`" + (f" @ {r['revision'][:12]}" if r.get("revision") else "")
        if r.get("bundled"):
            where = (where + " " if where else "") + f"(copy in `{r['bundled']}`)"
        lines.append(_row([m, where or "–", f"`{r.get('fingerprint', '')}`" if r.get("fingerprint") else "–",
                           r.get("frames_per_second", "–")]))
    bundled = all(r.get("bundled") for r in recs.values())
    note = ("The tokenizers are inside this folder (`tokenizers/`), so it runs from media as is."
            if bundled else "Tokens must come from exactly these tokenizers (fingerprints are checked).")
    return "\n".join(lines) + "\n\n" + note


def training_section(meta: Mapping[str, Any], training_data: str = "", training_command: str = "") -> str:
    out = []
    if training_data:
        out.append(training_data)
    store = meta.get("token_store") or {}
    info = meta.get("info") or {}
    training = meta.get("training") or {}
    if store.get("path"):
        out.append(f"- token store: `{store['path']}`")
    if info.get("store"):
        out.append(f"- token store: `{info['store']}`")
    if training.get("manifest"):
        out.append(f"- media manifest: `{training['manifest']}`")
    for key in ("preset", "steps"):
        v = training.get(key, (meta.get("pretrain") or {}).get(key))
        if v not in (None, ""):
            out.append(f"- {key}: {v}")
    if info.get("init"):
        out.append(f"- initialised from: `{info['init']}`")
    if info.get("experiment"):
        fold = info.get("fold") or {}
        out.append(f"- experiment: {info['experiment']}, fold {fold.get('index', '?')} (test speakers: "
                   f"{', '.join(map(str, fold.get('test', []))) or '?'}), selected epoch "
                   f"{info.get('best_epoch', '?')}, label fraction {info.get('label_fraction', 1)}")
    if training_command:
        out.append(f"\nCommand:\n\n```bash\n{training_command}\n```")
    return "\n".join(out)


def results_section(results: Mapping[str, Any], experiment: str | None = None, fold: int | None = None) -> str:
    """Markdown of a finetune ``results`` dict (``vqmae finetune``'s results.json): mean ± std
    over folds, one row per fold (``fold`` marked) and the chance level. ``experiment``: the one
    to show ('' / None: every experiment's summary row)."""
    from vqmae.evaluation.results import (
        chance_levels,
        fmt_metric,
        fmt_summary,
        metric_title,
        metrics_for_task,
    )

    task = results.get("task", "classify")
    metrics = metrics_for_task(task)
    exps: Mapping[str, Any] = results.get("experiments", {}) or {}
    names = [experiment] if experiment and experiment in exps else list(exps)
    if not names:
        return ""
    out = [_row(["experiment", *[metric_title(m) for m in metrics], "folds"]), _row(["---"] * (len(metrics) + 2))]
    for n in names:
        s = exps[n].get("summary", {})
        out.append(_row([n, *[fmt_summary(s, m) for m in metrics], len(exps[n].get("folds", []))]))
    out.append("\nTest speakers only (speaker-independent folds); mean ± sample std over folds.")
    if len(names) == 1:
        folds = exps[names[0]].get("folds", [])
        if folds:
            out += ["", _row(["fold", "test speakers", "test clips", *[metric_title(m) for m in metrics]]),
                    _row(["---"] * (len(metrics) + 3))]
            for f in folds:
                idx = f.get("fold", "?")
                label = f"**{idx}** (this model)" if fold is not None and idx == fold else idx
                test = f.get("test", {})
                out.append(_row([label, ", ".join(map(str, f.get("test_speakers", []))), f.get("n_test", ""),
                                 *[fmt_metric(m, test.get(m, float("nan"))) for m in metrics]]))
    chance = chance_levels({n: exps[n] for n in names})
    if chance:
        out.append(f"\nChance level: UAR {100 * chance['uar']:.1f} % (1 / {chance['classes']} classes), "
                   f"WAR {100 * chance['war']:.1f} % (always the most frequent test class).")
    return "\n".join(out)


def model_card(meta: Mapping[str, Any], *, model: Any = None, repo_id: str = "", title: str = "",
               license: str | None = None, datasets: list[str] | None = None, tags: list[str] | None = None,
               training_data: str = "", training_command: str | None = None,
               results: Mapping[str, Any] | None = None, sections: Mapping[str, str] | None = None):
    """A ``huggingface_hub.ModelCard`` for a model folder's ``config.json`` dict ``meta``.

    ``training_command`` None = this process's vqmae command line, if any. ``results``: a finetune
    results dict (see :func:`results_section`). ``sections``: extra ``{title: markdown}``."""
    from huggingface_hub import ModelCard, ModelCardData

    arch = str(meta.get("architecture", ""))
    name, what = DESCRIPTIONS.get(arch, (arch or "vqmae model", ""))
    info = meta.get("info") or {}
    task = info.get("task") or {}
    mods = list((meta.get("config") or {}).get("modalities") or info.get("tokenizers", {}) or [])
    pipeline = "feature-extraction"
    if arch == "vqmae-classifier":
        pipeline = "video-classification" if "visual" in mods else "audio-classification"
    data = ModelCardData(
        library_name="vqmae", license=license or DEFAULT_LICENSE, datasets=list(datasets) if datasets else None,
        tags=list(dict.fromkeys(["vqmae", arch, *TAGS.get(arch, []), *mods, *(tags or [])])),
        pipeline_tag=pipeline, base_model=_hub_ids(meta) or None,
        metrics=list(metrics_names(results)) if results else None)
    where = repo_id or "path/to/this/folder"
    body = [f"# {title or name}", "", f"A vqmae `{arch}` model: {what}".rstrip(), ""]
    rows = [("architecture", f"`{arch}`"), ("fingerprint", f"`{meta.get('fingerprint', '')}`"),
            ("vqmae version", meta.get("vqmae_version", "")), ("format version", meta.get("format_version", ""))]
    if model is not None:
        rows.append(("parameters", f"{sum(p.numel() for p in model.parameters()):,}"))
        for attr in ("token_shape", "codebook_size", "frames_per_second"):
            try:
                v = getattr(model, attr)
            except Exception:  # noqa: BLE001 - absent (AttributeError) or not computable: left out
                continue
            rows.append((attr.replace("_", " "), list(v) if isinstance(v, tuple) else v))
    if mods:
        rows.append(("modalities", ", ".join(mods)))
    if task.get("classes"):
        rows.append(("classes", ", ".join(task["classes"])))
    if task.get("target_names"):
        rows.append(("regression targets", ", ".join(task["target_names"])))
    body += [_row(["", ""]), _row(["---", "---"]), *[_row([k, v]) for k, v in rows], ""]
    body += ["## Usage", "", "```python", "from vqmae.checkpoint import load_pretrained", "",
             f'model = load_pretrained("{where}")  # a local folder or a hub id', "```", ""]
    tok = tokenizers_section(meta)
    if arch == "vqmae-classifier":
        bundled = "inside this folder" in tok
        body += [f"From media files{' (the tokenizers are included)' if bundled else ''}, with the "
                 "folder on disk:", "", "```bash", "vqmae predict --model path/to/this/folder clip.mp4",
                 "```", ""]
    if tok:
        body += ["## Tokenizers", "", tok, ""]
    cmd = invocation() if training_command is None else training_command
    train = training_section(meta, training_data, cmd)
    if train:
        body += ["## Training", "", train, ""]
    if results:
        fold = (info.get("fold") or {}).get("index")
        res = results_section(results, info.get("experiment"), fold)
        if res:
            body += ["## Results", "", res, ""]
    for head, text in (sections or {}).items():
        body += [f"## {head}", "", str(text).strip(), ""]
    return ModelCard("---\n" + data.to_yaml() + "\n---\n\n" + "\n".join(body).rstrip() + "\n")


def metrics_names(results: Mapping[str, Any] | None) -> tuple[str, ...]:
    from vqmae.evaluation.results import metrics_for_task

    return metrics_for_task((results or {}).get("task", "classify"))


def write_model_card(folder: str | Path, meta: Mapping[str, Any] | None = None, **card: Any) -> Path:
    """Write ``folder/README.md`` (atomically); ``meta`` defaults to the folder's config.json.
    ``card``: the keyword arguments of :func:`model_card`."""
    from vqmae.checkpoint import read_model_config
    from vqmae.io import atomic_write_text

    folder = Path(folder)
    if meta is None:
        meta = read_model_config(folder)
    return atomic_write_text(folder / CARD_NAME, str(model_card(meta, **card)))


def write_fold_cards(out_dir: str | Path, results: Mapping[str, Any], **card: Any) -> list[Path]:
    """After ``vqmae finetune``: rewrite the card of every saved fold model
    (``OUT/<experiment>/fold_<k>/model``) with the results table of its experiment."""
    from vqmae.checkpoint import CONFIG_NAME

    written = []
    for name, exp in (results.get("experiments") or {}).items():
        for f in exp.get("folds", []):
            folder = Path(out_dir) / name / f"fold_{f.get('fold')}" / "model"
            if (folder / CONFIG_NAME).is_file():
                written.append(write_model_card(folder, results=results, **card))
    return written
