"""The run report (``vqmae report``, the last stage of ``vqmae demo``): ``report.md`` and a
self-contained ``report.html`` built from what the stages left in a run folder (corpus and
manifest, folds, tokenizer quality and images, the token store summary, pretraining curves and
reconstructions, fine-tuning results, curves and plots, the information ladder). A verdict on the
method's claims comes first. Sections whose stage has not run are left out."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from vqmae.io import read_json, read_jsonl
from vqmae.reporting import Document


def _maybe_json(path: Path) -> Any:
    try:
        return read_json(path) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return str(v)


def _stages_section(doc: Document, run: Path) -> None:
    stages = _maybe_json(run / "stages.json")
    if not stages:
        return
    doc.heading("Stages")
    rows = [[name, s.get("status", ""), f"{s.get('seconds', 0):.0f} s", s.get("finished", "")]
            for name, s in stages.items()]
    total = sum(s.get("seconds", 0) for s in stages.values())
    rows.append(["total", "", f"{total:.0f} s", ""])
    doc.table(["stage", "status", "time", "finished"], rows)
    cmds = "\n".join(f"# {name}\n{s['command']}" for name, s in stages.items() if s.get("command"))
    if cmds:
        doc.paragraph("Each stage is an ordinary `vqmae` command; these reproduce the run:")
        doc.code(cmds)


def _dataset_section(doc: Document, run: Path) -> None:
    prepared = run / "prepared"
    manifest_path = prepared / "manifest.jsonl"
    if not manifest_path.is_file():
        return
    info = _maybe_json(prepared / "dataset.json") or {}
    rows = read_jsonl(manifest_path)
    classes = info.get("classes", [])
    doc.heading("Dataset")
    speakers = sorted({r["speaker"] for r in rows})
    hours = sum(float(r.get("duration", 0)) for r in rows) / 3600
    errors = read_jsonl(prepared / "errors.jsonl") if (prepared / "errors.jsonl").is_file() else []
    doc.paragraph(f"`{info.get('name', '?')}`: {len(rows)} clips, {len(speakers)} speakers, "
                  f"{hours * 60:.1f} minutes of audiovisual speech; {len(errors)} file(s) rejected "
                  f"by `vqmae prepare` (see prepared/errors.jsonl).")
    counts = Counter(r.get("label_name") for r in rows if r.get("label") is not None)
    if counts:
        doc.table(["class", "clips"], [[c, counts.get(c, 0)] for c in classes or sorted(counts)])
    if errors:
        reasons = Counter(e.get("reason", e.get("kind", "?")) for e in errors)
        doc.table(["rejected because", "files"], [[k, v] for k, v in reasons.most_common()])
    folds = _maybe_json(prepared / "folds.json")
    if folds and folds.get("folds"):
        meta = folds.get("meta", {})
        doc.paragraph(f"Speaker-independent folds (`{meta.get('protocol', '?')}`, seed {meta.get('seed', '?')}): "
                      "every speaker is tested exactly once; epochs are selected on validation speakers.")
        doc.table(["fold", "train speakers", "val speakers", "test speakers"],
                  [[f["index"] + 1, len(f["train"]), ", ".join(f["val"]), ", ".join(f["test"])]
                   for f in folds["folds"]])


def _tokenizer_section(doc: Document, run: Path) -> None:
    any_done = False
    for modality in ("audio", "visual"):
        tdir = run / f"tokenizer_{modality}"
        q = _maybe_json(tdir / "quality.json")
        if not q:
            continue
        if not any_done:
            doc.heading("Stage one: tokenizers")
            any_done = True
        doc.heading(f"{modality.capitalize()} VQ-VAE ({q.get('preset', '?')} preset)", 3)
        held = q.get("held_out", {})
        train = q.get("train", {})
        metric = ("lsd_db", "log-spectral distance (dB)") if modality == "audio" else ("psnr_db", "PSNR (dB)")
        rows = []
        for name, part in (("held-out speakers", held), ("training clips", train)):
            if not part:
                continue
            row = [name, part.get("clips", ""), _fmt(part.get(metric[0], float("nan")))]
            if modality == "visual":
                row.append(_fmt(part["ssim"]) if "ssim" in part else "–")
            row += [f"{part.get('codes_used_pct', 0):.0f} %", _fmt(part.get("perplexity", float("nan")))]
            rows.append(row)
        header = ["data", "clips", metric[1]] + (["SSIM"] if modality == "visual" else []) + \
            ["codes used", "perplexity"]
        doc.paragraph(f"{q.get('parameters', 0):,} parameters; codebook {q.get('codebook_size')} codes; "
                      f"{q.get('token_shape')} codes per frame at {q.get('frames_per_second')} frames/s.")
        doc.table(header, rows)
        plots = sorted((tdir / "plots").glob("*.png"), key=lambda p: p.stat().st_mtime)
        examples = [p for p in plots if p.name.startswith(("spectrogram_", "frames_"))]
        if examples:
            doc.paragraph(f"Held-out clips (one per emotion where the manifest has labels) and their "
                          f"reconstructions by the {modality} tokenizer"
                          + (" (frequency in kHz, power in dB):" if modality == "audio" else ":"))
        for p in examples + [p for p in plots if p.name in ("codebook_usage.png", "training_curves.png")]:
            doc.image(p, f"{modality}: {p.stem.replace('_', ' ')}")


def _store_section(doc: Document, run: Path) -> None:
    store = _maybe_json(run / "tokens" / "store.json")
    if not store:
        return
    doc.heading("Token store")
    secs = store.get("seconds", {})
    doc.paragraph(f"{store.get('num_clips', 0)} clips tokenized once ({store.get('num_errors', 0)} failed), "
                  f"{store.get('num_shards', 0)} shards, format version {store.get('format_version')}.")
    rows = []
    for m, p in store.get("provenance", {}).items():
        rows.append([m, str(p.get("token_shape")), p.get("codebook_size"), p.get("frames_per_second"),
                     store.get("frames", {}).get(m), f"{secs.get(m, 0) / 60:.1f} min",
                     p.get("fingerprint", "")[:12]])
    doc.table(["modality", "codes per frame", "codebook", "frames/s", "frames", "media", "tokenizer fingerprint"], rows)


def _pretrain_section(doc: Document, run: Path) -> None:
    pdir = run / "pretrain"
    summary = _maybe_json(pdir / "summary.json")
    metrics_path = pdir / "metrics.jsonl"
    if summary is None and not metrics_path.is_file():
        return
    doc.heading("Stage two: VQ-MAE-AV pretraining")
    if summary:
        doc.paragraph(f"{summary.get('parameters', 0):,} parameters, {summary.get('epochs', '?')} epochs "
                      f"({summary.get('steps', '?')} steps) on {summary.get('train_clips', '?')} clips in "
                      f"{_fmt(summary.get('seconds', float('nan')))} s; masked-token accuracy on "
                      f"{summary.get('val_clips', '?')} held-out clips against the code-frequency baselines "
                      "(predict the most frequent code; predict each position's most frequent code).")
        val, base = summary.get("val", {}), summary.get("baselines", {})
        rows = []
        for m in ("audio", "visual"):
            if f"acc_{m}" not in val:
                continue
            pct = lambda v: _fmt(100 * v) if isinstance(v, (int, float)) else "–"  # noqa: E731
            rows.append([m, pct(val[f"acc_{m}"]), pct(base.get(f"freq_acc_{m}")),
                         pct(base.get(f"pos_freq_acc_{m}")), _fmt(val.get(f"loss_{m}", float("nan")))])
        if rows:
            doc.table(["modality", "masked-token accuracy (%)", "most frequent code (%)",
                       "per-position mode (%)", "held-out loss"], rows)
    for p in sorted(pdir.glob("*.png")) + sorted((pdir / "plots").glob("*.png")):
        doc.image(p, f"pretraining: {p.stem.replace('_', ' ')}")
    example = pdir / "example"
    if (example / "reconstruction.png").is_file():
        doc.paragraph("A held-out clip, masked (half of the patches of each modality), its missing tokens "
                      "predicted and decoded by the tokenizers (`vqmae reconstruct`; WAV files in "
                      "`pretrain/example/`):")
        for name in ("reconstruction.png", "sweep.png"):
            if (example / name).is_file():
                doc.image(example / name, f"pretraining example: {name[:-4]}")
        doc.paragraph(sweep_note(_maybe_json(example / "reconstruction.json") or {},
                                 _maybe_json(example / "sweep.json") or [], summary or {}))


def _finetune_section(doc: Document, run: Path) -> None:
    fdir = run / "finetune"
    md = fdir / "results.md"
    if not md.is_file() and not (fdir / "results.json").is_file():
        return
    doc.heading("Fine-tuning and speaker-independent evaluation")
    results = _maybe_json(fdir / "results.json")
    if results:  # rendered again: the current tables (chance levels, ...)
        from vqmae.evaluation.results import results_markdown

        text = results_markdown(results)
    else:
        text = md.read_text()
    doc.markdown(text, base=fdir)  # image links are relative to finetune/
    linked = set(re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text))
    pngs = sorted(fdir.glob("*.png")) + sorted((fdir / "plots").glob("*.png"))
    for p in pngs:
        if str(p.relative_to(fdir)) not in linked and not p.name.startswith("curves_"):
            doc.image(p, p.stem.replace("_", " "))
    _finetune_curves(doc, fdir, (results or {}).get("experiments", {}))


def _finetune_curves(doc: Document, fdir: Path, experiments: dict[str, Any]) -> None:
    """A training-curve PNG per experiment (``finetune/plots/curves_<name>.png``) from its folds'
    metrics.jsonl: training loss and validation accuracy by epoch."""
    from vqmae.evaluation.plots import plot_finetune_curves

    names = list(experiments) or sorted(p.name for p in fdir.iterdir() if p.is_dir() and p.name != "plots")
    made = []
    for name in names:
        try:
            png = plot_finetune_curves(fdir / name, fdir / "plots" / f"curves_{name}.png", f"{name} (per fold)")
        except (OSError, ValueError, KeyError, TypeError):
            png = None
        if png is not None:
            made.append((name, png))
    if made:
        doc.heading("Fine-tuning curves", 3)
        doc.paragraph("Training loss and validation accuracy per epoch and fold, from each fold's "
                      "`metrics.jsonl` (the selected epoch is the best validation point). A training "
                      "loss that does not fall means the model cannot fit; validation at chance with a "
                      "falling loss means it learnt the training speakers only.")
        for name, png in made:
            doc.image(png, f"fine-tuning curves: {name}")


def sweep_note(rec: dict[str, Any], sweep: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """Why the example's token accuracy differs from the held-out one and may rise with the mask
    ratio (what reconstruct and the masking code do; see vqmae/mae/reconstruction.py)."""
    acc = rec.get("masked_token_accuracy", {})
    val, base = summary.get("val", {}), summary.get("baselines", {})
    parts = []
    for m, a in acc.items():
        if isinstance(a, (int, float)) and isinstance(val.get(f"acc_{m}"), (int, float)):
            parts.append(f"{m} {100 * a:.1f} % on this clip vs {100 * val[f'acc_{m}']:.1f} % over all held-out clips")
    text = ("How to read the example: its masked-token accuracy is measured on one window of one clip, "
            "over only the tokens masked there" + (f" ({'; '.join(parts)})" if parts else "") +
            ", so it varies with the clip's content (pauses and steady faces give repeated, frequent "
            "codes that are easy to guess). In the sweep the same random order masks the tokens: a "
            "higher ratio masks the tokens of a lower ratio plus others, so each point scores a different, "
            "larger set of this clip's tokens. A model that predicts masked codes mostly from their "
            "position and overall frequency, not from the visible neighbours, is not hurt by masking "
            "more; with less context its predictions fall back on those frequencies, so accuracy can "
            "rise with the ratio towards the per-position baseline")
    pos = [f"{m} {100 * base[f'pos_freq_acc_{m}']:.1f} %" for m in acc if f"pos_freq_acc_{m}" in base]
    top = {m: max((r.get(f"acc_{m}") or 0.0) for r in sweep) for m in acc} if sweep else {}
    if pos:
        text += f" ({', '.join(pos)})"
    if top and all(top[m] <= base.get(f"pos_freq_acc_{m}", 1.0) for m in top):
        text += "; here no point of the sweep beats it, i.e. the model does not yet use the context"
    return text + ". A rising curve is therefore not evidence of learning; the held-out table is."


def _verdict_section(doc: Document, run: Path) -> None:
    from vqmae.evaluation.verdict import verdict

    results = _maybe_json(run / "finetune" / "results.json")
    if results:
        lines = verdict(results)
    else:
        lines = [{"claim": c, "answer": "not run", "detail": "no finetune/results.json in this run folder"}
                 for c in ("above chance?", "audio+visual better than either alone?",
                           "pretrained better than scratch?")]
    doc.verdict(lines, "Verdict (held-out speakers, from the fold results)")


LADDER_MAX_CLIPS = 400
"""The report computes a missing ladder on at most this many clips (a random subset)."""


def _ensure_ladder(run: Path) -> str:
    """Compute ``RUN/ladder`` when missing or older than ``finetune/results.json``; '' when done
    or not needed, else why not (a run without a token store, ...)."""
    ladder, results = run / "ladder" / "ladder.json", run / "finetune" / "results.json"
    if ladder.is_file() and (not results.is_file() or ladder.stat().st_mtime >= results.stat().st_mtime):
        return ""
    from vqmae.errors import UserError
    from vqmae.evaluation.ladder import run_ladder

    try:
        run_ladder(run, max_clips=LADDER_MAX_CLIPS)
    except UserError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 -- the report is still written without its ladder
        from vqmae.runs import log

        log.warning("report: no information ladder: %s: %s", type(e).__name__, e)
        return f"{type(e).__name__}: {e}"
    return ""


def _ladder_section(doc: Document, run: Path, compute: bool = True) -> None:
    from vqmae.evaluation.ladder import ladder_markdown

    why = _ensure_ladder(run) if compute else ""
    data = _maybe_json(run / "ladder" / "ladder.json")
    doc.heading("Information ladder")
    if not data:
        doc.paragraph(f"Not computed for this run{f' ({why})' if why else ''}: `vqmae ladder {run}` "
                      "measures how much emotion information each stage keeps.")
        return
    doc.markdown(ladder_markdown(data), base=run / "ladder")


def build_report(run_dir: str | Path, ladder: bool = True) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``run_dir``; returns their paths. The verdict
    comes first. ``ladder``: compute ``RUN/ladder`` (:mod:`vqmae.evaluation.ladder`, at most
    :data:`LADDER_MAX_CLIPS` clips) when it is missing or older than the fine-tuning results."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder not found: {run}")
    doc = Document(f"vqmae report — {run.name}")
    _verdict_section(doc, run)
    doc.paragraph(f"Run folder `{run}`. Numbers below are read from the files each stage wrote.")
    from vqmae.vssl.report import vssl_section

    for section in (_stages_section, _dataset_section, _tokenizer_section, _store_section,
                    _pretrain_section, _finetune_section, vssl_section):
        section(doc, run)
    _ladder_section(doc, run, compute=ladder)
    return doc.write(run)
