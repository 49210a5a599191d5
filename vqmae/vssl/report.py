"""One comparison of audio encoders on the harness: the VSSL encoders (visual / audio-only /
multi-task pretraining), audio from scratch and VQ-MAE-AV's audio branch, each from the
``results.json`` of a ``vqmae finetune`` (or ``vqmae evaluate``) folder; main table (test and
training-speaker scores, mean ± std over folds, chance), label efficiency and noise.

    python -m vqmae.vssl.report "VQ-MAE-AV=runs/demo/finetune" "VSSL visual=runs/vssl/ft_visual" ...

prints the markdown; the run report (``vqmae demo vssl=true``) adds it as a section
(:func:`vssl_section`) from ``RUN/finetune`` and ``RUN/vssl/finetune_<task>``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vqmae.evaluation.results import chance_levels, fmt_metric, fmt_summary, md_table
from vqmae.io import read_json
from vqmae.vssl.config import TASKS as VSSL_TASKS

METRICS = ("war", "uar", "macro_f1", "ccc", "ccc_arousal", "ccc_valence")


def _read(folder: Path) -> dict[str, Any] | None:
    p = Path(folder) / "results.json"
    try:
        return read_json(p) if p.is_file() else None
    except (OSError, ValueError):
        return None


def collect(sources: Sequence[tuple[str, str | Path]], audio_only: Sequence[str] = ()) -> dict[str, Any]:
    """Rows of every source ``(label, folder with results.json)``: ``main`` (experiments, and
    audiovisual models tested with audio alone), ``label`` and ``noise`` rows, each named
    ``"<label> <experiment>"``. For the labels in ``audio_only`` only audio inputs are kept
    (experiments on audio, models given audio alone). ``chance``: from the first source with classes."""
    out: dict[str, Any] = {"main": [], "label": [], "noise": [], "chance": None, "missing": []}
    for label, folder in sources:
        res = _read(Path(folder))
        if res is None:
            out["missing"].append(f"{label} ({folder})")
            continue
        keep_all = label not in audio_only
        exps = res.get("experiments", {})
        out["chance"] = out["chance"] or chance_levels(exps)
        for name, r in exps.items():
            if keep_all or r.get("modalities") == ["audio"]:
                out["main"].append({"row": f"{label} {name}", "summary": r.get("summary", {}),
                                    "train": r.get("summary_train") or {}, "folds": len(r.get("folds", []))})
        for r in res.get("missing_modality", []):
            if keep_all or r.get("modalities") == ["audio"]:
                out["main"].append({"row": f"{label} {r['experiment']}, given {'+'.join(r['modalities'])} alone",
                                    "summary": r["summary"], "train": {},
                                    "folds": r["summary"].get("uar", r["summary"].get("ccc", {})).get("n", "")})
        for r in (res.get("label_efficiency") or {}).get("rows", []):
            out["label"].append({"row": f"{label} {r['experiment']}", "fraction": float(r["fraction"]),
                                 "summary": r["summary"], "n_train": r.get("n_train_mean")})
        for r in (res.get("noise") or {}).get("rows", []):
            snr = r.get("snr_db")
            cond = "clean" if r["noise"] == "clean" else f"{r['noise']} {snr:g} dB"
            out["noise"].append({"row": f"{label} {r['experiment']}", "condition": cond, "summary": r["summary"]})
    return out


def comparison_markdown(data: Mapping[str, Any], metric: str = "uar") -> str:
    """The three tables of :func:`collect`'s rows (markdown, headings at level 2, as ``results.md``)."""
    chance = data.get("chance")
    metrics = [m for m in METRICS if any(m in r["summary"] for r in data["main"])]
    lines = ["## Test speakers (mean ± std over folds)", ""]
    rows = [[r["row"], fmt_summary(r["train"], metric) if r["train"] else "–",
             *[fmt_summary(r["summary"], m) for m in metrics], r["folds"]] for r in data["main"]]
    if chance:
        rows.append(["chance", "", *[fmt_metric(m, chance[m]) if m in chance else "–" for m in metrics], ""])
    titles = {"war": "WAR (%)", "uar": "UAR (%)", "macro_f1": "macro-F1 (%)", "ccc": "CCC (mean)",
              "ccc_arousal": "CCC arousal", "ccc_valence": "CCC valence"}
    lines += [md_table(["model", f"train {titles[metric]}", *[titles[m] for m in metrics], "folds"], rows), ""]
    lines += ["train: the selected model on its own training speakers (can it fit them?); the other "
              "columns: the unseen test speakers. A row whose mean minus one std does not clear chance is "
              "not distinguishable from chance.", ""]
    if data["label"]:
        fracs = sorted({r["fraction"] for r in data["label"]})
        names = list(dict.fromkeys(r["row"] for r in data["label"]))
        by = {(r["row"], r["fraction"]): r for r in data["label"]}
        rows = [[n, *[fmt_summary(by[(n, f)]["summary"], metric) if (n, f) in by else "–" for f in fracs]]
                for n in names]
        lines += [f"## Label efficiency (test {titles[metric]}; fraction of each fold's training labels)", "",
                  md_table(["model", *[f"{f * 100:g} %" for f in fracs]], rows), ""]
    if data["noise"]:
        conds = list(dict.fromkeys(r["condition"] for r in data["noise"]))
        names = list(dict.fromkeys(r["row"] for r in data["noise"]))
        by = {(r["row"], r["condition"]): r for r in data["noise"]}
        rows = [[n, *[fmt_summary(by[(n, c)]["summary"], metric) if (n, c) in by else "–" for c in conds]]
                for n in names]
        lines += [f"## Noise (test {titles[metric]}; noise added to the test audio: VSSL models read the "
                  "noisy waveform, VQ-MAE-AV its re-tokenized audio)", "",
                  md_table(["model", *conds], rows), ""]
    if data.get("missing"):
        lines += [f"Not found (no results.json): {', '.join(data['missing'])}.", ""]
    return "\n".join(lines)


def demo_sources(run: Path) -> list[tuple[str, Path]]:
    """The sources of a demo run folder: its VQ-MAE-AV fine-tuning and the VSSL runs."""
    return [("VQ-MAE-AV", run / "finetune")] + [
        (f"VSSL {t}", run / "vssl" / f"finetune_{t}") for t in VSSL_TASKS]


def vssl_section(doc: Any, run: Path) -> None:
    """The run report's section (``vqmae demo vssl=true``): left out when no VSSL run is there."""
    sources = demo_sources(Path(run))
    if not any((folder / "results.json").is_file() for _, folder in sources[1:]):
        return
    doc.heading("Visually guided self-supervised audio encoders (VSSL)")
    doc.paragraph("The VSSL audio encoders (`vqmae pretrain-vssl`: talking-face generation, audio-only "
                  "PASE-style targets, both; docs/VISUAL_SSL.md) fine-tuned on the same folds as VQ-MAE-AV "
                  "(`vqmae finetune --init RUN/vssl/pretrain_<task>/audio_encoder`, audio only), an encoder of "
                  "the same architecture trained from scratch, and VQ-MAE-AV's audio branch (its audio-only "
                  "runs, and the audiovisual model given audio alone).")
    doc.markdown(comparison_markdown(collect(sources, audio_only=["VQ-MAE-AV"])))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    bad = [a for a in args if "=" not in a]
    if not args or bad:
        print(f"usage: python -m vqmae.vssl.report LABEL=FOLDER ... (not {bad[0] if bad else 'nothing'})",
              file=sys.stderr)
        return 2
    print(comparison_markdown(collect([(a.split("=", 1)[0], a.split("=", 1)[1]) for a in args])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
