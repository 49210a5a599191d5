"""The information ladder (vqmae ladder): the speaker-grouped probe finds information that is there
and not what is not, stages that lose more than half are flagged, features have their shapes,
and the command fails with one line on a folder that is not a run."""

from __future__ import annotations

import numpy as np
import torch

from vqmae.evaluation.ladder import (
    _flags,
    band_stats,
    face_stats,
    ladder_markdown,
    probe,
    speaker_standardize,
)

FOLDS = [{"train": [f"s{i}" for i in range(6)], "val": ["s6", "s7"], "test": ["s8", "s9"]},
         {"train": [f"s{i}" for i in range(4, 10)], "val": ["s2", "s3"], "test": ["s0", "s1"]}]


def _data(signal: float, seed: int = 0):
    """10 speakers × 24 clips, 4 classes; features = class signal + a per-speaker offset + noise."""
    rng = np.random.default_rng(seed)
    speakers = np.repeat([f"s{i}" for i in range(10)], 24)
    labels = np.tile(np.arange(4), 60)
    means = rng.normal(size=(4, 8))
    offsets = {s: 3 * rng.normal(size=8) for s in set(speakers)}
    x = signal * means[labels] + np.stack([offsets[s] for s in speakers]) + rng.normal(size=(240, 8))
    return x, labels, speakers


def test_probe_finds_class_information_across_speakers():
    x, y, spk = _data(signal=2.0)
    r = probe(x, y, spk, FOLDS)
    assert r["acc"] > 0.8 and r["clips"] == 96 and len(r["folds"]) == 2


def test_probe_is_at_chance_without_information():
    x, y, spk = _data(signal=0.0)
    assert probe(x, y, spk, FOLDS)["acc"] < 0.45  # chance 0.25; 96 clips


def test_speaker_standardize_removes_speaker_offsets():
    x, _, spk = _data(signal=0.0)
    z = speaker_standardize(x, spk)
    for s in set(spk):
        assert np.allclose(z[spk == s].mean(0), 0, atol=1e-9)


def test_a_stage_losing_more_than_half_is_flagged():
    table = {"media": {"audio": 0.50, "visual": 0.40}, "tokenizer decodings": {"audio": 0.45, "visual": 0.20},
             "codes": {"audio": 0.44, "visual": 0.20}, "frozen pretrained encoder": {"audio": 0.18}}
    flags = _flags(table, chance=1 / 6)
    assert ("tokenizer decodings", "visual") in flags  # 23.3 -> 3.3 points above chance
    assert ("frozen pretrained encoder", "audio") in flags
    assert ("tokenizer decodings", "audio") not in flags and ("codes", "visual") not in flags
    md = ladder_markdown({"stages": list(table), "table": table, "flagged": [list(f) for f in flags],
                          "chance": 1 / 6, "folds": 2, "clips": 96, "speakers": 10, "notes": []})
    assert "| tokenizer decodings | 45.0 | 20.0 ⚠ |" in md and "Chance" in md and "ladder.png" in md


def test_feature_shapes():
    assert band_stats(torch.rand(50, 161) + 1e-3).shape[0] % 3 == 0
    assert face_stats(torch.rand(10, 3, 64, 64) - 0.5).shape == (512,)
    # the codes stage uses the codes experiment's features: per token position, over time
    from vqmae.evaluation.codes_probe import clip_code_features

    tokens = np.array([[0, 1], [1, 1], [2, 1]])  # 3 frames x 2 positions
    h = clip_code_features(tokens, None, "visual", 4)  # no codebook: per-position histograms
    assert np.allclose(h, [1 / 3, 1 / 3, 1 / 3, 0, 0, 1, 0, 0])
    f = clip_code_features(tokens, np.eye(4, 3, dtype=np.float32), "visual")
    assert f.shape == (3 * 2 * 3,)  # mean, std, mean |change| of 2 positions x 3 dims


def test_ladder_command_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    from vqmae.cli import main

    assert main(["ladder", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no token store" in err
    assert main(["ladder", str(tmp_path / "missing")]) == 2


def test_locate_reads_a_user_run_folder_from_its_stages_json(tmp_path):
    """A run whose stages wrote elsewhere: the paths come from the recorded commands."""
    from vqmae.evaluation.ladder import locate
    from vqmae.io import write_json

    store, model, folds = tmp_path / "data" / "tok", tmp_path / "models" / "mae", tmp_path / "f.json"
    write_json(store / "store.json", {})
    model.mkdir(parents=True)
    write_json(folds, {"folds": FOLDS})
    run = tmp_path / "run"
    write_json(run / "stages.json", {
        "tokenize": {"command": f"vqmae tokenize --manifest m --audio-tokenizer /a/tok --out {store}"},
        "finetune": {"command": f"vqmae finetune --tokens {store} --init {model} --folds {folds} "
                                f"--out {tmp_path / 'ft'} dropout=0.1"}})
    where = locate(run)
    assert where["tokens"] == store and where["init"] == str(model) and where["folds"] == FOLDS
    assert where["tokenizers"]["audio"] == "/a/tok" and where["results"] == {}


def test_training_span_changes_no_prediction_of_l2_linear_models():
    """More features than training rows: fitting in the training rows' span gives the same
    logistic-regression probabilities and ridge predictions on new rows, with fewer columns."""
    from sklearn.linear_model import LogisticRegression, Ridge

    from vqmae.evaluation.logreg_probe import training_span

    rng = np.random.default_rng(0)
    x = {"train": rng.normal(size=(40, 300)), "test": rng.normal(size=(15, 300))}
    y = rng.integers(0, 3, 40)
    z = training_span(x)
    assert z["train"].shape == (40, 40) and z["test"].shape == (15, 40)
    full = LogisticRegression(C=0.1, max_iter=2000, tol=1e-10).fit(x["train"], y).predict_proba(x["test"])
    span = LogisticRegression(C=0.1, max_iter=2000, tol=1e-10).fit(z["train"], y).predict_proba(z["test"])
    np.testing.assert_allclose(span, full, atol=1e-5)
    t = rng.normal(size=40)
    np.testing.assert_allclose(Ridge(alpha=3.0).fit(z["train"], t).predict(z["test"]),
                               Ridge(alpha=3.0).fit(x["train"], t).predict(x["test"]), atol=1e-8)
    few = {"train": x["train"][:, :20], "test": x["test"][:, :20]}
    assert training_span(few) is few  # fewer features than rows: unchanged
