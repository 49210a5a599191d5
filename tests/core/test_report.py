"""The run report (vqmae report): verdict first, every linked image exists, confusion colour bar
labelled for what it shows, fine-tuning curves, the sweep explained; and the page as a reader
sees it, opened in a real headless browser (Debian's chromium; CI installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vqmae.evaluation.plots import plot_confusion
from vqmae.evaluation.verdict import verdict
from vqmae.io import write_json, write_jsonl
from vqmae.run_report import build_report

CLASSES = ["neutral", "happy", "sad", "angry", "fearful", "surprised"]


def _confusion(acc: float, per_class: int = 20, seed: int = 0) -> list[list[int]]:
    """A 6-class confusion matrix whose diagonal holds about ``acc`` of each row."""
    rng = np.random.default_rng(seed)
    cm = np.zeros((6, 6), dtype=int)
    for i in range(6):
        right = int(round(acc * per_class))
        cm[i, i] = right
        for _ in range(per_class - right):
            cm[i, rng.choice([j for j in range(6) if j != i])] += 1
    return cm.tolist()


def _experiment(name: str, wars: list[float], seed: int = 0) -> dict:
    mods = {"av": ["audio", "visual"], "audio": ["audio"], "visual": ["visual"]}[name.rsplit("-", 1)[1]]
    folds = [{"fold": k, "test_speakers": [f"spk{k}"], "n_test": 120, "best_epoch": 1,
              "val": {"uar": w}, "test": {"war": w, "uar": w, "macro_f1": w},
              "confusion": _confusion(w, seed=seed + k)} for k, w in enumerate(wars)]
    cm = np.sum([f["confusion"] for f in folds], axis=0).tolist()
    mean, std = float(np.mean(wars)), float(np.std(wars, ddof=1)) if len(wars) > 1 else 0.0
    return {"name": name, "kind": "train", "modalities": mods, "folds": folds, "confusion": cm,
            "summary": {m: {"mean": mean, "std": std, "n": len(wars), "values": wars}
                        for m in ("war", "uar", "macro_f1")}}


def make_run(root: Path, experiments: dict[str, list[float]] | None = None) -> Path:
    """A tiny synthetic run folder: finetune results + confusion PNGs + metrics.jsonl, a tokenizer
    quality.json with an example image, a pretraining summary and example (no training)."""
    experiments = experiments or {"finetune-av": [.50, .55, .52], "finetune-audio": [.40, .42, .38],
                                  "finetune-visual": [.30, .33, .29], "scratch-av": [.20, .17, .18]}
    run = root / "run"
    fdir = run / "finetune"
    exps = {}
    for k, (name, wars) in enumerate(experiments.items()):
        e = _experiment(name, wars, seed=10 * k)
        plot_confusion(e["confusion"], CLASSES, fdir / f"confusion_{name}.png", name)
        e["confusion_png"] = f"confusion_{name}.png"
        exps[name] = e
        for f in range(len(wars)):
            write_jsonl(fdir / name / f"fold_{f}" / "metrics.jsonl",
                        [{"step": 4 * (ep + 1), "epoch": ep, "split": "train", "loss": 2.0 - 0.3 * ep}
                         for ep in range(3)] +
                        [{"step": 4 * (ep + 1), "epoch": ep, "split": "val", "war": 0.2 + 0.1 * ep,
                          "uar": 0.2 + 0.1 * ep} for ep in range(3)])
    write_json(fdir / "results.json", {"task": "classify", "classes": CLASSES, "experiments": exps})
    tdir = run / "tokenizer_audio"
    write_json(tdir / "quality.json", {"preset": "demo", "codebook_size": 64, "token_shape": [8],
                                       "frames_per_second": 50, "parameters": 1000,
                                       "held_out": {"clips": 4, "lsd_db": 9.0, "codes_used_pct": 50,
                                                    "perplexity": 20.0}})
    plot_confusion(_confusion(0.5), CLASSES, tdir / "plots" / "spectrogram_example.png")  # any PNG
    pdir = run / "pretrain"
    write_json(pdir / "summary.json", {"parameters": 1000, "epochs": 2, "steps": 8, "train_clips": 10,
                                       "val_clips": 4, "val": {"acc_audio": 0.089},
                                       "baselines": {"freq_acc_audio": 0.07, "pos_freq_acc_audio": 0.077}})
    plot_confusion(_confusion(0.3), CLASSES, pdir / "example" / "reconstruction.png")
    write_json(pdir / "example" / "reconstruction.json", {"masked_token_accuracy": {"audio": 0.229}})
    write_json(pdir / "example" / "sweep.json", [{"ratio": r, "acc_audio": a} for r, a in ((.25, .05), (.75, .07))])
    return run


# ----------------------------------------------------------------------------- verdict


def test_verdict_answers_each_claim_from_the_fold_results(tmp_path):
    run = make_run(tmp_path)
    results = json.loads((run / "finetune" / "results.json").read_text())
    lines = {v["claim"]: v for v in verdict(results)}
    assert lines["audio+visual above chance?"]["answer"] == "yes"
    assert "binomial p" in lines["audio+visual above chance?"]["detail"]
    assert lines["audio above chance?"]["answer"] == "yes"
    assert lines["audio+visual better than either alone?"]["answer"] == "yes"  # 52 vs 40 ± 2
    assert lines["pretrained better than scratch (audio+visual)?"]["answer"] == "yes"
    assert "pretrained better than scratch (audio)?" not in lines  # no scratch-audio row: no line


def test_verdict_says_no_and_not_distinguishable(tmp_path):
    run = make_run(tmp_path, {"finetune-av": [.18, .15, .17], "scratch-av": [.16, .20, .15],
                              "finetune-audio": [.17, .16, .18]})
    lines = {v["claim"]: v for v in verdict(json.loads((run / "finetune" / "results.json").read_text()))}
    assert lines["audio+visual above chance?"]["answer"] in ("no", "not distinguishable")
    assert lines["pretrained better than scratch (audio+visual)?"]["answer"] == "not distinguishable"
    assert lines["audio+visual better than either alone?"]["answer"] == "not run"  # no visual row
    logreg = make_run(tmp_path / "l", {"logreg-av": [.40, .41, .40], "logreg-audio": [.39, .40, .41],
                                       "logreg-visual": [.30, .30, .31]})
    (fusion,) = [v for v in verdict(json.loads((logreg / "finetune" / "results.json").read_text()))
                 if v["claim"] == "audio+visual better than either alone?"]
    assert fusion["answer"] == "not distinguishable" and "logreg-av" in fusion["detail"]
    below = make_run(tmp_path / "b", {"finetune-av": [.10, .12, .11]})
    (line,) = [v for v in verdict(json.loads((below / "finetune" / "results.json").read_text()))
               if v["claim"] == "audio+visual above chance?"]
    assert line["answer"] == "no"


def test_verdict_compares_an_audiovisual_model_with_itself_given_one_modality(tmp_path):
    """Only finetune-av trained (the demo): the fusion claim uses its missing-modality tests."""
    run = make_run(tmp_path, {"finetune-av": [.50, .52, .48]})
    results = json.loads((run / "finetune" / "results.json").read_text())

    def alone(m, wars):
        return {"experiment": "finetune-av", "modalities": [m],
                "summary": {"war": {"mean": sum(wars) / 3, "std": 0.02, "n": 3}}}

    results["missing_modality"] = [alone("audio", [.30, .32, .34]), alone("visual", [.40, .38, .42])]
    lines = {v["claim"]: v for v in verdict(results)}
    fusion = lines["audio+visual better than either alone?"]
    assert fusion["answer"] == "yes" and "finetune-av given visual only" in fusion["detail"]
    results["missing_modality"] = [alone("audio", [.30, .32, .34]), alone("visual", [.49, .50, .51])]
    assert {v["claim"]: v for v in verdict(results)}["audio+visual better than either alone?"]["answer"] \
        == "not distinguishable"


def test_verdict_comes_first_and_says_not_run_without_results(tmp_path):
    run = make_run(tmp_path)
    md, html = build_report(run)
    text = md.read_text()
    assert text.index("## Verdict") < text.index("Run folder")
    assert "**yes**" in text
    page = html.read_text()
    assert page.index("id='verdict'") < page.index("<h2>Fine-tuning")
    empty = tmp_path / "empty"
    empty.mkdir()
    md, _ = build_report(empty)
    assert md.read_text().count("**not run**") == 3


# ----------------------------------------------------------------------------- the page's content


def test_every_image_linked_by_report_md_exists(tmp_path):
    """The confusion images were linked relative to finetune/ from the run folder (wrong path)."""
    run = make_run(tmp_path)
    md, _ = build_report(run)
    links = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", md.read_text())
    assert any("finetune/confusion_finetune-av.png" == link for link in links)
    assert len(links) >= 8
    for link in links:
        assert (run / link).is_file(), link


def test_finetune_curves_per_experiment_and_sweep_explained(tmp_path):
    run = make_run(tmp_path)
    md, html = build_report(run)
    text = md.read_text()
    for name in ("finetune-av", "finetune-audio", "finetune-visual", "scratch-av"):
        assert (run / "finetune" / "plots" / f"curves_{name}.png").is_file()
        assert f"finetune/plots/curves_{name}.png" in text
    assert "22.9 % on this clip vs 8.9 % over all held-out clips" in text
    assert "per-position baseline" in text and "not evidence of learning" in text
    assert html.read_text().count("<img ") == len(re.findall(r"!\[", text))


def test_confusion_colour_bar_names_what_it_shows(tmp_path, monkeypatch):
    """Counts were drawn over a colour bar labelled 'recall': now the cells show the row share
    (the colour) and the count, and the bar says it is row-normalised."""
    import matplotlib.figure

    labels = []
    orig = matplotlib.figure.Figure.colorbar

    def spy(self, *a, **kw):
        labels.append(kw.get("label"))
        return orig(self, *a, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "colorbar", spy)
    texts = []
    orig_text = matplotlib.axes.Axes.text
    monkeypatch.setattr(matplotlib.axes.Axes, "text",
                        lambda self, x, y, s, *a, **kw: (texts.append(s), orig_text(self, x, y, s, *a, **kw))[1])
    plot_confusion([[3, 1], [0, 4]], ["a", "b"], tmp_path / "c.png")
    assert labels == ["share of the true class (row-normalised)"]
    assert "75 %\n(3)" in texts and "100 %\n(4)" in texts


# ----------------------------------------------------------------------------- in a real browser

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)

PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const v = document.getElementById('verdict');
  const r = {images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
             verdictTop: v ? v.getBoundingClientRect().top : null, viewport: window.innerHeight};
  const pre = document.createElement('pre'); pre.id = 'probe-result';
  pre.textContent = 'PROBE' + JSON.stringify(r) + 'PROBE'; document.body.appendChild(pre);
});
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1280,900", "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install -y chromium; "
                                              ".ci/run installs it)")
def test_report_html_in_a_real_browser_images_load_and_verdict_on_first_screen(tmp_path):
    run = make_run(tmp_path)
    _, html = build_report(run)
    page = tmp_path / "probe.html"
    page.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
    out = _chromium("--dump-dom", page.as_uri())
    m = re.search(r"PROBE(\{.*?\})PROBE", out.stdout)
    assert m, f"no probe result from chromium: {out.stderr[-2000:]}"
    r = json.loads(m.group(1))
    assert r["images"] >= 8
    assert r["loaded"] == r["images"], r
    assert r["verdictTop"] is not None and 0 <= r["verdictTop"] < r["viewport"], r
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", html.as_uri())
    assert shot.is_file() and shot.stat().st_size > 1000


def test_tokenizer_examples_one_per_emotion_across_speakers():
    """The examples were the first held-out clips: all neutral clips of one speaker."""
    from types import SimpleNamespace

    from vqmae.tokenizers.quality import example_clips

    emotions = ["neutral", "happy", "sad"]
    clips = [SimpleNamespace(id=f"{s}_{e}_{k}", speaker=s) for s in ("a", "b") for e in emotions for k in range(3)]
    frames = SimpleNamespace(clips=clips)
    labels = {c.id: c.id.split("_")[1] for c in clips}
    chosen = example_clips(frames, 2, labels)
    assert sorted(labels[clips[i].id] for i in chosen) == sorted(emotions)
    assert len({clips[i].speaker for i in chosen}) == 2
    assert example_clips(frames, 2, None) == [0, 1] and example_clips(frames, 0, labels) == []


def test_reconstruction_spectrograms_have_a_frequency_axis_in_hz(tmp_path, monkeypatch):
    import matplotlib.axes
    import torch

    from vqmae.mae.reconstruction_plots import plot_reconstruction

    labels = []
    orig = matplotlib.axes.Axes.set_ylabel
    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylabel",
                        lambda self, text, *a, **kw: (labels.append(text), orig(self, text, *a, **kw))[1])
    power = torch.rand(50, 161) + 1e-3
    window = {"audio": {"input": power}}
    rec = {"token_mask": {"audio": torch.rand(50, 20) > 0.5}}
    plot_reconstruction(tmp_path / "r.png", window, rec, {"audio": power}, frames=4, title="t",
                        sample_rate=16000, frames_per_second=50)
    assert (tmp_path / "r.png").is_file()
    assert sum("Hz" in t for t in labels) == 3


def test_finetune_curves_star_the_selected_epoch(tmp_path, monkeypatch):
    import matplotlib.axes

    from vqmae.evaluation.plots import plot_finetune_curves

    run = make_run(tmp_path)
    write_json(run / "finetune" / "finetune-av" / "fold_0" / "fold_result.json", {"key": {}, "result": {"best_epoch": 2}})
    calls = []
    orig = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda self, *a, **kw: (calls.append(a), orig(self, *a, **kw))[1])
    assert plot_finetune_curves(run / "finetune" / "finetune-av", tmp_path / "c.png") is not None
    stars = [a for a in calls if "*" in a]
    assert len(stars) == 1 and stars[0][0] == 3  # epoch 2 (0-based) drawn at 3
