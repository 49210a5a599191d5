"""Same seed, same numbers — also while another job loads the machine (issue: thread counts used to
follow the machine's load). Two tiny pipelines, the second beside two busy processes, must give the
same tokenizer quality, masked-token accuracy and fine-tuning results to the last digit."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from vqmae.io import read_json


def _busy(seconds: float) -> None:
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        x += 1


def _numbers(run) -> dict:
    out = {}
    for m in ("audio", "visual"):
        q = read_json(run / f"tokenizer_{m}" / "quality.json")
        out[f"tok_{m}"] = {k: v for k, v in q.items() if isinstance(v, (int, float))}
    out["pretrain"] = read_json(run / "pretrain" / "summary.json")
    res = read_json(run / "finetune" / "results.json")
    out["finetune"] = {name: [f["test"] for f in r["folds"]] for name, r in res["experiments"].items()}
    return out


def _strip_times(d):
    if isinstance(d, dict):
        return {k: _strip_times(v) for k, v in d.items()
                if not any(t in k for t in ("second", "time", "elapsed", "per_s", "path"))}
    if isinstance(d, list):
        return [_strip_times(v) for v in d]
    return d


@pytest.mark.slow
def test_same_seed_same_numbers_idle_and_loaded(tmp_path):
    from vqmae.pipelines.demo import main

    assert main([f"out={tmp_path / 'idle'}", "preset=tiny", "in_process=true"]) == 0
    ctx = mp.get_context("spawn")
    hogs = [ctx.Process(target=_busy, args=(600.0,), daemon=True) for _ in range(2)]
    for h in hogs:
        h.start()
    try:
        assert main([f"out={tmp_path / 'loaded'}", "preset=tiny", "in_process=true"]) == 0
    finally:
        for h in hogs:
            h.terminate()
    idle, loaded = _strip_times(_numbers(tmp_path / "idle")), _strip_times(_numbers(tmp_path / "loaded"))
    assert idle["finetune"] and idle["tok_audio"] and idle["tok_visual"] and idle["pretrain"]
    assert idle == loaded
