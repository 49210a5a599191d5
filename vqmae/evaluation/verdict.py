"""The verdict at the top of the run report: one line per claim, computed from ``results.json``.

Claims (each answered "yes", "no", "not distinguishable" or "not run", with the numbers behind it):

* **above chance** (per modality set): the fine-tuned row (else probe / logreg / scratch) against
  the majority-class WAR of its test clips, by a one-sided binomial test over all test clips of
  all folds (p < 0.05) *and* mean WAR − chance larger than one fold-std;
* **audio+visual better than either alone**: ``finetune-av`` against the better of
  ``finetune-audio`` / ``finetune-visual`` (or, when only the audio+visual model was trained, against
  itself given the better single modality);
* **pretrained better than scratch** (per modality set): ``finetune-<m>`` against ``scratch-<m>``.

Two rows are compared by their mean WAR over folds: "yes" when the difference exceeds one
fold-std (the larger of the two rows'), "no" when it is below minus one fold-std, else "not
distinguishable". With a single fold (no std) a two-proportion z-test over the pooled test
clips (two-sided, 5 %) decides instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

MODALITY_NAMES = {"av": "audio+visual", "audio": "audio", "visual": "visual"}
ROW_PREFERENCE = ("finetune", "probe", "logreg", "codes", "scratch")
ALPHA = 0.05


def _pooled(e: Mapping[str, Any]) -> tuple[int, int, float] | None:
    """(correct, clips, majority-class share) over all test clips of an experiment."""
    cm = e.get("confusion")
    if not cm:
        return None
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.sum()
    if n <= 0:
        return None
    return int(np.trace(cm)), int(n), float(cm.sum(axis=1).max() / n)


def _war(e: Mapping[str, Any]) -> tuple[float, float, int] | None:
    s = (e.get("summary") or {}).get("war")
    if not s or s.get("mean") is None or not math.isfinite(s["mean"]):
        return None
    std = s.get("std")
    return float(s["mean"]), float(std) if std is not None and math.isfinite(std) else 0.0, int(s.get("n", 0))


def binomial_p(correct: int, n: int, p0: float) -> float:
    """One-sided P(X >= correct) for X ~ Binomial(n, p0)."""
    from scipy.stats import binomtest

    return float(binomtest(correct, n, p0, alternative="greater").pvalue)


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def above_chance(exps: Mapping[str, Any], mname: str) -> dict[str, Any]:
    claim = f"{MODALITY_NAMES.get(mname, mname)} above chance?"
    row = next((f"{k}-{mname}" for k in ROW_PREFERENCE if f"{k}-{mname}" in exps), None)
    if row is None:
        return {"claim": claim, "answer": "not run", "detail": f"no {mname} experiment in this run"}
    e = exps[row]
    war, pooled = _war(e), _pooled(e)
    if war is None or pooled is None:
        return {"claim": claim, "answer": "not run", "detail": f"{row} has no test accuracy"}
    mean, std, folds = war
    correct, n, chance = pooled
    p = binomial_p(correct, n, chance)
    margin = mean - chance
    if margin <= 0:
        answer = "no"
    elif p < ALPHA and margin > std:
        answer = "yes"
    else:
        answer = "not distinguishable"
    detail = (f"{row}: WAR {_pct(mean)} ± {_pct(std)} over {folds} fold(s) vs chance {_pct(chance)} "
              f"(majority class); {correct}/{n} test clips right, one-sided binomial p = {p:.2g}")
    return {"claim": claim, "answer": answer, "detail": detail, "row": row, "p_value": p,
            "war": mean, "std": std, "chance": chance}


def compare(exps: Mapping[str, Any], a: str, b: str) -> tuple[str, str]:
    """Is row ``a`` better than row ``b``? -> (answer, numbers)."""
    wa, wb = _war(exps[a]), _war(exps[b])
    if wa is None or wb is None:
        return "not run", f"{a if wa is None else b} has no test accuracy"
    (ma, sa, na), (mb, sb, nb) = wa, wb
    d = ma - mb
    nums = f"{a} {_pct(ma)} ± {_pct(sa)} vs {b} {_pct(mb)} ± {_pct(sb)} (difference {100 * d:+.1f} points"
    if min(na, nb) >= 2:
        s = max(sa, sb)
        answer = "yes" if d > s else "no" if d < -s else "not distinguishable"
        return answer, nums + f", one fold-std {100 * s:.1f})"
    pa, pb = _pooled(exps[a]), _pooled(exps[b])
    if pa is None or pb is None:
        return "not distinguishable", nums + ", one fold: no spread to compare with)"
    (ca, n1, _), (cb, n2, _) = pa, pb
    pool = (ca + cb) / (n1 + n2)
    se = math.sqrt(max(pool * (1 - pool) * (1 / n1 + 1 / n2), 1e-12))
    z = (ca / n1 - cb / n2) / se
    from scipy.stats import norm

    p = float(2 * norm.sf(abs(z)))
    answer = "not distinguishable" if p >= ALPHA else ("yes" if z > 0 else "no")
    return answer, nums + f"; one fold: two-proportion z-test over the test clips, p = {p:.2g})"


def fusion_claim(exps: Mapping[str, Any], missing: list[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """``<kind>-av`` vs the better of ``<kind>-audio`` / ``<kind>-visual``, for the first kind of
    :data:`ROW_PREFERENCE` that ran all three; else a trained ``<kind>-av`` model against itself
    given one modality only (``missing``: ``results["missing_modality"]`` rows)."""
    claim = "audio+visual better than either alone?"
    kind = next((k for k in ROW_PREFERENCE if all(f"{k}-{m}" in exps for m in ("av", "audio", "visual"))), None)
    if kind is None:
        alone = {f"{r['experiment']} given {r['modalities'][0]} only": {"summary": r["summary"]}
                 for r in missing if r["experiment"].endswith("-av")}
        row = next((f"{k}-av" for k in ROW_PREFERENCE if f"{k}-av" in exps
                    and sum(n.startswith(f"{k}-av ") for n in alone) == 2), None)
        if row is not None:
            table = {**exps, **alone}
            singles = [n for n in alone if n.startswith(f"{row} ") and _war(table[n]) is not None]
            if _war(exps[row]) is not None and len(singles) == 2:
                best = max(singles, key=lambda n: _war(table[n])[0])
                answer, detail = compare(table, row, best)
                return {"claim": claim, "answer": answer,
                        "detail": f"the audio+visual model against itself given the better single modality: {detail}"}
        return {"claim": claim, "answer": "not run",
                "detail": "needs one experiment on av, audio and visual (modalities=[audio,visual,av]), "
                          "or an audio+visual model tested with each modality alone"}
    singles = [f"{kind}-{m}" for m in ("audio", "visual") if _war(exps[f"{kind}-{m}"]) is not None]
    if _war(exps[f"{kind}-av"]) is None or len(singles) < 2:
        return {"claim": claim, "answer": "not run", "detail": "rows without test accuracy"}
    best = max(singles, key=lambda n: _war(exps[n])[0])
    answer, detail = compare(exps, f"{kind}-av", best)
    return {"claim": claim, "answer": answer, "detail": f"against the better single modality: {detail}"}


def pretrain_claim(exps: Mapping[str, Any], mname: str) -> dict[str, Any]:
    claim = f"pretrained better than scratch ({MODALITY_NAMES.get(mname, mname)})?"
    a, b = f"finetune-{mname}", f"scratch-{mname}"
    missing = [n for n in (a, b) if n not in exps]
    if missing:
        return {"claim": claim, "answer": "not run",
                "detail": f"needs {', '.join(missing)} (experiments=[..., finetune, scratch])"}
    answer, detail = compare(exps, a, b)
    return {"claim": claim, "answer": answer, "detail": detail}


def verdict(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The claims of a ``results.json`` dict, in report order (see the module docstring)."""
    exps: Mapping[str, Any] = results.get("experiments", {}) or {}
    if results.get("task", "classify") == "regress":
        return [{"claim": "above chance?", "answer": "not run",
                 "detail": "regression-only task: no classes, no chance level"}]
    ran = {n.rsplit("-", 1)[-1] for n in exps}
    mods = [m for m in ("av", "audio", "visual") if m in ran] or ["av"]
    lines = [above_chance(exps, m) for m in mods]
    missing = results.get("missing_modality") or []
    lines.append(fusion_claim(exps, missing))
    trained = next((f"{k}-av" for k in ("finetune", "scratch") if f"{k}-av" in exps), None)
    if trained and not lines[-1]["detail"].startswith(f"against the better single modality: {trained} "):
        own = fusion_claim({trained: exps[trained]}, [r for r in missing if r["experiment"] == trained])
        if own["answer"] != "not run":  # the trained model against itself given one modality
            lines.append({**own, "claim": f"audio+visual better than either alone ({trained} model)?"})
    pre = [m for m in mods if f"scratch-{m}" in exps] or ["av"]  # av's line says "not run" if need be
    lines += [pretrain_claim(exps, m) for m in pre]
    return lines
