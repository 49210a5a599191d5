"""The information ladder of a run folder: how much emotion information each stage keeps.

For every stage a speaker-grouped linear probe (logistic regression on per-speaker standardised
clip features, its strength chosen on the validation speakers, the run's own folds) predicts the
emotion of held-out speakers:

==========================  ==============================================================
media                       the tokenizer's input: log band-energy statistics of the power
                            spectrogram (audio); face-pixel statistics at 16 × 16 (visual)
tokenizer decodings         the same statistics of the decoded stored codes (the token store
                            holds ``encode(input)`` of each clip)
codes                       per token position: mean / std / mean |change| of the clips' codebook
                            vectors over time (the ``codes`` experiment's features)
untrained encoder           features of a randomly initialised encoder (reference), as below
frozen pretrained encoder   the pretrained VQ-MAE-AV encoder's outputs: per patch position,
                            mean / std over the window's time steps, averaged over windows
fine-tuned                  held-out WAR of the ``finetune-<m>`` rows of ``results.json``
==========================  ==============================================================

Accuracy is pooled over every test clip of every fold (WAR); chance is the majority-class share
of those clips. A stage is flagged when it keeps less than half of the previous stage's
above-chance accuracy. Writes ``ladder.json``, ``ladder.md`` and ``ladder.png``.
Shapes: features ``(N clips, F)``; labels ``(N,)``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqmae.errors import UserError
from vqmae.evaluation.codes_probe import code_features
from vqmae.evaluation.logreg_probe import LOGREG_C, speaker_standardize, training_span
from vqmae.io import atomic_write_text, read_json, write_json
from vqmae.runs import log

STAGES = ("media", "tokenizer decodings", "codes", "untrained encoder", "frozen pretrained encoder",
          "fine-tuned")
CHAIN = ("media", "tokenizer decodings", "codes", "frozen pretrained encoder", "fine-tuned")
COLUMNS = {"audio": ("audio",), "visual": ("visual",), "audio+visual": ("audio", "visual")}


def probe(x: np.ndarray, labels: np.ndarray, speakers: Sequence[str], folds: Sequence[dict[str, Any]]
          ) -> dict[str, Any]:
    """Speaker-grouped logistic regression over ``folds`` (``{"train", "val", "test"}`` speaker
    lists): C from :data:`LOGREG_C` by validation accuracy; pooled test accuracy and per fold."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    spk = np.asarray([str(s) for s in speakers])
    z = speaker_standardize(x, spk)
    right, total, per_fold = 0, 0, []
    for f in folds:
        idx = {s: np.flatnonzero(np.isin(spk, [str(v) for v in f.get(s, [])]) & (labels >= 0))
               for s in ("train", "val", "test")}
        if len(idx["test"]) == 0 or len(np.unique(labels[idx["train"]])) < 2:
            continue
        zs = training_span({s: z[i] for s, i in idx.items()})
        best = None
        for c in LOGREG_C:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf = LogisticRegression(C=c, max_iter=500).fit(zs["train"], labels[idx["train"]])
            val = float((clf.predict(zs["val"]) == labels[idx["val"]]).mean()) if len(idx["val"]) else -abs(c - 1)
            if best is None or val > best[0]:
                best = (val, clf)
        ok = int((best[1].predict(zs["test"]) == labels[idx["test"]]).sum())
        right, total = right + ok, total + len(idx["test"])
        per_fold.append(ok / len(idx["test"]))
    return {"acc": right / total if total else None, "clips": total, "folds": per_fold,
            "std": float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else 0.0}


# ----------------------------------------------------------------------------- features


def band_stats(power: torch.Tensor, bands: int = 32) -> np.ndarray:
    """Power spectrogram ``(T, F)`` -> ``(3 · bands,)``: per log-spaced band the mean and std of
    log energy over time and the mean absolute frame-to-frame change (a simple log-mel summary)."""
    p = power.double().clamp_min(1e-10)
    f = p.shape[1]
    edges = np.unique(np.geomspace(1, f, bands + 1).astype(int))
    e = torch.stack([p[:, a - 1:b].mean(1) for a, b in zip(edges[:-1], edges[1:])], 1).log()
    d = (e[1:] - e[:-1]).abs().mean(0) if e.shape[0] > 1 else torch.zeros(e.shape[1])
    return torch.cat([e.mean(0), e.std(0, unbiased=False), d]).numpy()


def face_stats(faces: torch.Tensor, size: int = 16) -> np.ndarray:
    """Faces ``(T, 3, s, s)`` -> ``(2 · size²,)``: grey 16 × 16 mean and std over frames."""
    g = faces.float().mean(1, keepdim=True)
    g = torch.nn.functional.adaptive_avg_pool2d(g, size)[:, 0].reshape(g.shape[0], -1)
    return torch.cat([g.mean(0), g.std(0, unbiased=False)]).double().numpy()


def _codebook(tok: Any) -> torch.Tensor | None:
    for m in tok.modules():
        cb = getattr(type(m), "codebook", None)
        if isinstance(cb, property):
            try:
                return m.codebook.detach().reshape(-1, m.codebook.shape[-1]).float().cpu()
            except (AttributeError, RuntimeError):
                return None
    return None


# ----------------------------------------------------------------------------- the run folder


def _stage_arg(run: Path, stage: str, key: str) -> str | None:
    """The value of ``--key VALUE`` / ``key=VALUE`` in the command ``stages.json`` records for ``stage``."""
    cmd = ((_json(run / "stages.json") or {}).get(stage) or {}).get("command", "")
    m = re.search(rf"(?:^|\s)(?:--{key}[ =]|{key}=)'?([^\s']+)", cmd)
    return m.group(1) if m else None


def _json(path: Path) -> Any:
    try:
        return read_json(path) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _first(*paths: Any, name: str = "") -> Path | None:
    for p in paths:
        if p and (Path(p) / name if name else Path(p)).exists():
            return Path(p)
    return None


def locate(run: Path) -> dict[str, Any]:
    """The token store, folds, tokenizers, pretrained model and results of a run folder: the
    ``vqmae demo`` / ``run`` layout, else the paths in the commands ``stages.json`` records
    (finetune's ``--tokens/--init/--folds/--out``, tokenize's ``--out`` and tokenizers)."""
    arg = lambda stage, key: _stage_arg(run, stage, key)  # noqa: E731
    tokens = _first(run / "tokens", arg("finetune", "tokens"), arg("tokenize", "out"), name="store.json")
    if tokens is None:
        raise UserError(f"{run}: no token store (tokens/store.json, or the finetune / tokenize command "
                        "in stages.json)")
    fdir = _first(run / "finetune", arg("finetune", "out"), name="results.json")
    results = (_json(fdir / "results.json") if fdir else None) or {}
    folds = (results.get("protocol") or {}).get("fold_speakers")
    if not folds:
        fj = _first(run / "prepared" / "folds.json", arg("finetune", "folds"))
        fj = fj / "folds.json" if fj is not None and fj.is_dir() else fj
        folds = ((_json(fj) if fj else None) or {}).get("folds")
    if not folds:
        raise UserError(f"{run}: no folds (finetune/results.json, prepared/folds.json or finetune --folds)")
    init = _first(run / "pretrain" / "model", results.get("init"), arg("finetune", "init"))
    return {"tokens": tokens, "folds": folds, "results": results,
            "init": str(init) if init is not None and init.is_dir() else None,
            "tokenizers": {m: arg("tokenize", f"{m}-tokenizer") for m in ("audio", "visual")}}


def _tokenizers(store: Any, run: Path, recorded: dict[str, str | None] | None = None) -> dict[str, Any]:
    from vqmae.tokenizers import load_tokenizer

    out = {}
    for m in store.modalities:
        cands = [run / f"tokenizer_{m}" / "model", store.provenance.get(m, {}).get("tokenizer_dir"),
                 (recorded or {}).get(m)]
        for c in cands:
            if c and Path(c).is_dir():
                try:
                    tok = load_tokenizer(c).eval()
                    store.check_tokenizer(m, tok.fingerprint())  # its decodings read the store's codes
                    out[m] = tok
                    break
                except Exception as e:  # noqa: BLE001 -- a missing or foreign folder: that stage is skipped
                    log.warning("ladder: cannot use the %s tokenizer %s: %s", m, c, e)
    return out


def media_features(store: Any, ids: Sequence[int], tokenizers: dict[str, Any], decodings: bool
                   ) -> tuple[dict[str, dict[str, np.ndarray]], list[int]]:
    """``{"media" | "tokenizer decodings": {modality: (N, F)}}`` for the clips ``ids`` that load
    (and the kept ids): statistics of the tokenizer input and of the decoding of the clip's
    stored codes (``tokenizers`` must be the store's: :func:`_tokenizers` checks fingerprints)."""
    from vqmae.data.clips import load_clip, resolve_clip_config
    from vqmae.data.manifest import read_manifest

    root = read_manifest(store.meta["manifest"]).root
    cfg = resolve_clip_config(store.meta.get("clip_config") or {}, tokenizers)
    stat = {"audio": band_stats, "visual": face_stats}
    feats: dict[str, dict[str, list[np.ndarray]]] = {"media": {}, "tokenizer decodings": {}}
    kept = []
    for i in ids:
        clip = store.clips[int(i)]
        try:
            media = load_clip(root / clip.path, cfg, modalities=tuple(tokenizers))
        except Exception as e:  # noqa: BLE001 -- one unreadable clip is left out, not the ladder
            log.warning("ladder: %s left out: %s", clip.id, e)
            continue
        kept.append(int(i))
        with torch.no_grad():
            for m, tok in tokenizers.items():
                x = tok.prepare(media.audio if m == "audio" else media.faces)
                feats["media"].setdefault(m, []).append(stat[m](x))
                if decodings:
                    codes = torch.from_numpy(np.asarray(store.read(int(i), m), dtype=np.int64))
                    feats["tokenizer decodings"].setdefault(m, []).append(stat[m](tok.decode(codes).float()))
    return {s: {m: np.stack(v) for m, v in d.items()} for s, d in feats.items() if d}, kept


def encoder_features(store: Any, ids: Sequence[int], init: str | None, seed: int
                     ) -> dict[str, dict[str, np.ndarray]]:
    """``{"frozen pretrained encoder" | "untrained encoder": {column: (N, F)}}``: features of the
    pretrained encoder and of the same architecture at random init, summarised like the codes
    (per patch position, mean and std of the outputs over time: ``position_statistics``)."""
    from vqmae.data.token_dataset import TokenDataset
    from vqmae.evaluation.logreg_probe import clip_features
    from vqmae.evaluation.model_builders import Builders
    from vqmae.evaluation.task import infer_task

    if not init:
        return {}
    task = infer_task(store)
    builders = Builders(init, store, task, head="mean")
    out: dict[str, dict[str, np.ndarray]] = {}
    for col, mods in COLUMNS.items():
        if not set(mods) <= set(builders.mae_cfg.modalities) or not set(mods) <= set(store.modalities):
            continue
        for name, pretrained in (("frozen pretrained encoder", True), ("untrained encoder", False)):
            torch.manual_seed(seed)
            model = builders(mods, pretrained=pretrained, head="mean")()
            order, x = clip_features(model, TokenDataset(store, list(ids), builders.window_seconds, "all", mods))
            pos = {int(c): k for k, c in enumerate(order)}
            out.setdefault(name, {})[col] = x[[pos[int(i)] for i in ids]]
    return out


def _flags(table: dict[str, dict[str, float | None]], chance: float) -> list[tuple[str, str]]:
    flagged = []
    for col in COLUMNS:
        prev = None
        for st in CHAIN:
            v = table.get(st, {}).get(col)
            if v is None:
                continue
            if prev is not None and prev - chance > 0 and v - chance < 0.5 * (prev - chance):
                flagged.append((st, col))
            prev = v
    return flagged


def run_ladder(run_dir: str | Path, out: str | Path | None = None, decodings: bool = True,
               max_clips: int = 0, seed: int = 0, progress: Callable[[str], None] | None = None
               ) -> dict[str, Any]:
    """Compute the ladder of a run folder and write ``ladder.json`` / ``.md`` / ``.png`` into
    ``out`` (default ``RUN/ladder``); returns ladder.json's content."""
    from vqmae.data.token_store import TokenStore
    from vqmae.evaluation.plots import plot_ladder

    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"run folder not found: {run}")
    say = progress or log.info
    where = locate(run)
    store = TokenStore.open(where["tokens"])
    labels_all = np.array([-1 if c.label is None else int(c.label) for c in store.clips])
    fold_spk = {str(s) for f in where["folds"] for k in ("train", "val", "test") for s in f.get(k, [])}
    ids = [i for i, c in enumerate(store.clips) if labels_all[i] >= 0 and str(c.speaker) in fold_spk]
    notes = []
    if max_clips and len(ids) > max_clips:
        notes.append(f"probes on a random {max_clips} of the {len(ids)} labelled clips (max_clips)")
        ids = sorted(np.random.default_rng(seed).choice(ids, max_clips, replace=False).tolist())
    tokenizers = _tokenizers(store, run, where.get("tokenizers"))
    if not tokenizers:
        notes.append("media and decodings skipped: the tokenizer folders were not found")
    say(f"ladder: media features of {len(ids)} clips")
    feats, kept = media_features(store, ids, tokenizers, decodings) if tokenizers else ({}, ids)
    if not decodings:
        notes.append("tokenizer decodings skipped (decodings=false)")
    ids = kept
    say("ladder: code and encoder features")
    vectors = {m: _codebook(t) for m, t in tokenizers.items()}
    feats["codes"] = {m: code_features(store, np.asarray(ids), m, None if vectors.get(m) is None
                                       else vectors[m].double().numpy().astype(np.float32))
                      for m in store.modalities}
    if where["init"]:
        feats.update(encoder_features(store, ids, where["init"], seed))
    else:
        notes.append("encoder stages skipped: no pretrained model folder in this run")
    labels = labels_all[ids]
    speakers = [store.clips[i].speaker for i in ids]
    table: dict[str, dict[str, float | None]] = {}
    detail: dict[str, dict[str, Any]] = {}
    for st, by in feats.items():
        for col, mods in COLUMNS.items():
            x = by.get(col) if col in by else (np.concatenate([by[m] for m in mods], 1)
                                               if all(m in by for m in mods) else None)
            if x is None:
                continue
            r = probe(x, labels, speakers, where["folds"])
            table.setdefault(st, {})[col] = r["acc"]
            detail.setdefault(st, {})[col] = r
    exps = where["results"].get("experiments", {})
    alone = {r["modalities"][0]: r["summary"]["war"]["mean"] for r in where["results"].get("missing_modality", [])
             if r.get("experiment") == "finetune-av" and (r.get("summary") or {}).get("war")}
    for col, short in (("audio", "audio"), ("visual", "visual"), ("audio+visual", "av")):
        e = exps.get(f"finetune-{short}")
        if e and e.get("confusion"):
            cm = np.asarray(e["confusion"], dtype=np.float64)
            table.setdefault("fine-tuned", {})[col] = float(np.trace(cm) / cm.sum())
        elif short in alone:  # the audio+visual model given this modality only
            table.setdefault("fine-tuned", {})[col] = float(alone[short])
            notes.append(f"fine-tuned {col}: the audio+visual model given {col} only (mean over folds)")
    test = [labels[k] for k, s in enumerate(speakers) if any(str(s) in map(str, f.get("test", [])) for f in where["folds"])]
    chance = float(np.bincount(test).max() / len(test)) if test else None
    flagged = _flags(table, chance) if chance is not None else []
    out_dir = Path(out) if out else run / "ladder"
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = [s for s in STAGES if s in table]
    plot_ladder(stages, {c: [table[s].get(c) for s in stages] for c in COLUMNS}, out_dir / "ladder.png",
                chance, flagged)
    data = {"run": str(run), "clips": len(ids), "speakers": len(set(speakers)), "folds": len(where["folds"]),
            "chance": chance, "stages": stages, "table": table, "detail": detail,
            "flagged": [list(f) for f in flagged], "notes": notes, "plot": "ladder.png"}
    write_json(out_dir / "ladder.json", data)
    atomic_write_text(out_dir / "ladder.md", ladder_markdown(data))
    return data


def ladder_markdown(data: dict[str, Any]) -> str:
    """The ladder as Markdown: table (accuracy %, flags), chance, notes and the chart."""
    def cell(st: str, col: str) -> str:
        v = data["table"].get(st, {}).get(col)
        if v is None:
            return "–"
        return f"{100 * v:.1f}" + (" ⚠" if [st, col] in data.get("flagged", []) else "")

    rows = ["| stage | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    rows += [f"| {st} | " + " | ".join(cell(st, c) for c in COLUMNS) + " |" for st in data["stages"]]
    chance = data.get("chance")
    lines = [f"Emotion accuracy (%) of held-out speakers at each stage: a linear probe (logistic "
             f"regression on per-speaker standardised clip features, strength chosen on the validation "
             f"speakers) over the run's {data['folds']} folds, {data['clips']} clips of {data['speakers']} "
             f"speakers; the fine-tuned row is the fine-tuned models' test accuracy. "
             + (f"Chance (majority class of the test clips): {100 * chance:.1f} %. " if chance is not None else "")
             + "⚠ = the stage keeps less than half of the previous stage's above-chance accuracy "
             "(chain: media → decodings → codes → frozen pretrained encoder → fine-tuned; the "
             "untrained encoder is a reference for the pretrained one).", "", *rows, ""]
    pre, unt = data["table"].get("frozen pretrained encoder", {}), data["table"].get("untrained encoder", {})
    for col in COLUMNS:
        if pre.get(col) is not None and unt.get(col) is not None:
            word = "beats" if pre[col] > unt[col] else "does not beat"
            lines.append(f"- {col}: the pretrained encoder {word} an untrained one "
                         f"({100 * pre[col]:.1f} vs {100 * unt[col]:.1f} %).")
    lines += [f"- {n}" for n in data.get("notes", [])]
    if data.get("flagged"):
        lines.append("- Lost more than half: " + ", ".join(f"{s} ({c})" for s, c in data["flagged"]) + ".")
    lines += ["", f"![information ladder]({data.get('plot', 'ladder.png')})", ""]
    return "\n".join(lines)
