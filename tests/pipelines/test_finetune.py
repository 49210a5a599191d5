"""The fine-tuning protocol: folds never leak speakers, the epoch is selected on validation only,
a tiny fine-tune beats chance, baselines, label efficiency, noise, the finetune / evaluate CLIs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vqmae.data.folds import Fold, make_folds, write_folds
from vqmae.data.memory_store import MemoryTokenStore
from vqmae.data.token_store import TokenStore
from vqmae.data.token_writer import synthetic_provenance, write_token_store
from vqmae.evaluation import noise as N
from vqmae.evaluation.experiments import Experiment, run_experiment
from vqmae.evaluation.fold_training import train_fold
from vqmae.evaluation.protocol import ProtocolConfig, finetune_train_config
from vqmae.evaluation.scoring import evaluate_model
from vqmae.evaluation.splits import fold_clips, subsample
from vqmae.evaluation.task import infer_task
from vqmae.mae import VQMAEAV, mae_preset
from vqmae.mae.classifier import EmotionClassifier
from vqmae.pipelines import evaluate as evaluate_stage
from vqmae.pipelines import finetune as finetune_stage
from vqmae.presets import preset_values

pytestmark = pytest.mark.usefixtures("one_thread")


CLASSES = ["calm", "happy", "angry"]


def tiny_store(root: Path, speakers: int = 6, per_class: int = 4, seed: int = 0) -> TokenStore:
    """Tokens shaped like the ``tiny`` MAE preset (audio (8,) of 16 codes at 50 fps, visual (6, 6)
    of 32 at 25 fps), 0.5–0.8 s clips. The class shows in both modalities (a class-specific code,
    used by no other class, in half of the frames); arousal and valence follow the class."""
    rng = np.random.default_rng(seed)
    rows, audio, visual = [], [], []
    for s in range(speakers):
        for c in range(len(CLASSES)):
            for k in range(per_class):
                t = int(rng.integers(12, 20))
                a = rng.integers(0, 12, (2 * t, 8))
                a[::2, 0] = 13 + c
                v = rng.integers(0, 28, (t, 6, 6))
                v[::2, 0, :] = 29 + c
                rows.append({"id": f"spk{s}_{CLASSES[c]}_{k}", "speaker": f"spk{s}", "label": c,
                             "label_name": CLASSES[c], "path": f"spk{s}/{c}_{k}.mp4",
                             "targets": {"arousal": float(c - 1 + 0.1 * rng.standard_normal()),
                                         "valence": float((0.5, 1.0, -1.0)[c] + 0.1 * rng.standard_normal())}})
                audio.append(a)
                visual.append(v)
    prov = {"audio": synthetic_provenance("audio", codebook_size=16, token_shape=(8,), frames_per_second=50),
            "visual": synthetic_provenance("visual", codebook_size=32, token_shape=(6, 6), frames_per_second=25)}
    write_token_store(root, rows, {"audio": audio, "visual": visual}, prov, classes=CLASSES)
    return TokenStore.open(root)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TokenStore:
    return tiny_store(tmp_path_factory.mktemp("store") / "tokens")


@pytest.fixture(scope="module")
def mae_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("mae") / "mae"
    VQMAEAV(mae_preset("tiny")).save_pretrained(folder)
    return folder


def fast_cfg(**train) -> ProtocolConfig:
    return ProtocolConfig(train=finetune_train_config(**{"epochs": 3, "lr": 2e-3, "batch_size": 8, **train}))


def speakers(store: TokenStore) -> list[str]:
    return sorted({c.speaker for c in store.clips})


# ---------------------------------------------------------------------------------- folds


def test_folds_never_leak_speakers(store, mae_dir, tmp_path):
    folds = make_folds(speakers(store), k=3, seed=0)
    task = infer_task(store, "classify")
    exp = Experiment("ft", lambda: EmotionClassifier.from_mae(mae_dir, num_classes=3)[0],
                     modalities=("audio", "visual"))
    r = run_experiment(exp, store, folds, task, fast_cfg(epochs=1), tmp_path, save_models=False)
    tested = []
    for f, res in zip(folds, r["folds"]):
        tr, va, te = set(res["train_speakers"]), set(res["val_speakers"]), set(res["test_speakers"])
        assert not (tr & va or tr & te or va & te)
        assert te == set(f.test) and va == set(f.val) and tr == set(f.train)
        # what was actually scored: only clips of the fold's test speakers
        rows = [json.loads(x) for x in (tmp_path / f"fold_{f.index}" / "predictions.jsonl").read_text().splitlines()]
        assert {row["speaker"] for row in rows} == set(f.test)
        assert len(rows) == res["n_test"] == sum(c.speaker in f.test for c in store.clips)
        tested += sorted(te)
    assert sorted(tested) == speakers(store)  # every speaker tested exactly once
    # a fold that puts a speaker in two splits is refused
    with pytest.raises(ValueError, match="both train and test"):
        fold_clips(store, Fold(0, ["spk0", "spk1"], ["spk2"], ["spk1", "spk3"]), task)


# ------------------------------------------------------------------- selection on validation


class ScriptedModel(nn.Module):
    """A model whose accuracy depends on how long it has trained and on who speaks: validation
    speakers (audio code 1 at position 0) are predicted right only after 2 epochs, test speakers
    (code 2) only after 4. The training-step counter is a buffer, so it is part of the saved best
    epoch. Position 1 of each audio frame holds the label."""

    modalities = ("audio",)

    def __init__(self, steps_per_epoch: int, num_classes: int):
        super().__init__()
        self.spe, self.num_classes = steps_per_epoch, num_classes
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.steps += 1
        epochs_done = int(self.steps) // self.spe
        group, label = audio[:, 0, 0], audio[:, 0, 1]
        right_after = torch.where(group == 1, 2, torch.where(group == 2, 4, -1))
        pred = torch.where(right_after == epochs_done, label, (label + 1) % self.num_classes)
        return 10.0 * F.one_hot(pred.long(), self.num_classes).float() + self.bias


def test_selected_epoch_comes_from_validation_only(tmp_path):
    train_spk, val_spk, test_spk = ["a", "b"], ["c"], ["d"]
    rows, audio = [], []
    for spk in train_spk + val_spk + test_spk:
        group = 1 if spk in val_spk else 2 if spk in test_spk else 0
        for c in range(3):
            for k in range(4):
                a = np.zeros((25, 2), dtype=np.int64)
                a[:, 0], a[:, 1] = group, c
                rows.append({"id": f"{spk}_{c}_{k}", "speaker": spk, "label": c})
                audio.append(a)
    prov = {"audio": synthetic_provenance("audio", codebook_size=8, token_shape=(2,), frames_per_second=50)}
    store = TokenStore.open(write_token_store(tmp_path / "s", rows, {"audio": audio}, prov, classes=CLASSES))
    fold = Fold(0, train_spk, val_spk, test_spk)
    task = infer_task(store)
    cfg = fast_cfg(epochs=6, batch_size=4)
    cfg.window_seconds, cfg.min_train_batches = 0.2, 0
    n_train = 2 * 3 * 4
    model, result = train_fold(ScriptedModel(n_train // 4, 3), store, fold, task, cfg, tmp_path / "fold")
    val_uar = [h["uar"] for h in result["history"]]
    assert val_uar == [0, 1, 0, 0, 0, 0]  # validation peaks after epoch index 1
    assert result["best_epoch"] == 1
    assert result["test"]["war"] == 0.0  # the honest outcome: the test peak (epoch 3) is never used
    # had the test split chosen the epoch, it would have scored perfectly
    model.steps.fill_(4 * (n_train // 4))
    test_ids = fold_clips(store, fold, task)["test"]
    assert evaluate_model(model, store, test_ids, task, 0.2)[0]["war"] == 1.0


# ------------------------------------------------------------------------------ training


def test_tiny_finetune_beats_chance(store, mae_dir, tmp_path):
    folds = make_folds(speakers(store), k=3, seed=0)[:1]
    task = infer_task(store)
    assert task.kind == "both" and task.num_classes == 3 and task.num_targets == 2
    exp = Experiment("ft", lambda: EmotionClassifier.from_mae(mae_dir, num_classes=3, num_targets=2)[0],
                     modalities=("audio", "visual"))
    r = run_experiment(exp, store, folds, task, fast_cfg(epochs=4), tmp_path)
    test = r["folds"][0]["test"]
    assert test["war"] > 1 / 3 + 0.25 and test["uar"] > 1 / 3 + 0.25
    assert test["ccc_arousal"] > 0.3
    miss = r["folds"][0]["test_missing_modality"]
    assert set(miss) == {"audio", "visual"}
    assert (tmp_path / "fold_0" / "model" / "config.json").is_file()
    assert not (tmp_path / "fold_0" / "checkpoints").exists()  # resumable state removed after the fold


def test_logreg_probe_and_frozen_probe(store, mae_dir, tmp_path):
    folds = make_folds(speakers(store), k=3, seed=0)[:1]
    task = infer_task(store, "classify")
    exp = Experiment("lr", lambda: EmotionClassifier.from_mae(mae_dir, num_classes=3, head="mean")[0],
                     kind="logreg", modalities=("audio", "visual"))
    r = run_experiment(exp, store, folds, task, fast_cfg(), tmp_path / "lr")
    assert r["folds"][0]["test"]["war"] > 0.6  # the class codes are linearly visible in mean-pooled features
    assert "C" in r["folds"][0]["chosen"]
    exp = Experiment("probe", lambda: EmotionClassifier.from_mae(mae_dir, num_classes=3)[0], kind="probe",
                     modalities=("audio", "visual"))
    mae_state = EmotionClassifier.from_mae(mae_dir, num_classes=3)[0].encoder.state_dict()
    seen = {}
    run_experiment(exp, store, folds, task, fast_cfg(epochs=1), tmp_path / "probe",
                   on_fold=lambda e, f, m: seen.update(m.encoder.state_dict()))
    assert all(torch.equal(seen[k], v) for k, v in mae_state.items())  # the encoder did not move


def test_label_fraction_is_stratified_and_seeded(store):
    task = infer_task(store, "classify")
    ids = list(range(len(store)))
    few = subsample(store, ids, 0.1, 0, task)
    assert sorted({store.clips[i].label for i in few}) == [0, 1, 2]  # at least one per class
    assert few == subsample(store, ids, 0.1, 0, task) and few != subsample(store, ids, 0.1, 1, task)
    assert len(subsample(store, ids, 0.5, 0, task)) == len(store) // 2
    assert subsample(store, ids, 1.0, 0, task) == ids


# --------------------------------------------------------------------------------- noise


class FakeAudioTokenizer:
    """Codes = quantised frame energy: noise changes them, the clean signal reproduces them."""

    codebook_size, token_shape, frames_per_second = 16, (8,), 50.0

    def prepare(self, wave: torch.Tensor) -> torch.Tensor:
        n = wave.shape[0] // 320
        return wave[: n * 320].reshape(n, 8, 40)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.pow(2).mean(-1).sqrt() * 30).clamp(0, 15).long()


def test_mix_at_snr():
    rng = np.random.default_rng(0)
    clean = np.sin(np.arange(16000) / 10).astype(np.float32)
    for snr in (20, 5, 0):
        noise = N.white_noise(clean.size, rng)
        mixed = N.mix_at_snr(clean, noise, snr)
        got = 10 * np.log10(np.mean(clean ** 2) / np.mean((mixed - clean) ** 2))
        assert got == pytest.approx(snr, abs=1e-3)
    babble = N.babble_noise(8000, [clean, clean[::-1]], rng, talkers=3)
    assert babble.shape == (8000,) and np.isfinite(babble).all()


def test_noisy_tokens_overlay_the_store(tmp_path):
    tok = FakeAudioTokenizer()
    rng = np.random.default_rng(0)
    waves = [(0.3 * np.sin(np.arange(640 * 20) / (3 + i))).astype(np.float32) for i in range(6)]
    rows, audio, visual = [], [], []
    for i, w in enumerate(waves):
        rows.append({"id": f"c{i}", "speaker": f"s{i % 3}", "label": i % 3})
        audio.append(tok.encode(tok.prepare(torch.from_numpy(N.peak_normalize(w)))).numpy())
        visual.append(rng.integers(0, 32, (20, 6, 6)))
    prov = {"audio": synthetic_provenance("audio", codebook_size=16, token_shape=(8,), frames_per_second=50),
            "visual": synthetic_provenance("visual", codebook_size=32, token_shape=(6, 6), frames_per_second=25)}
    store = TokenStore.open(write_token_store(tmp_path / "s", rows, {"audio": audio, "visual": visual}, prov,
                                              classes=CLASSES))
    noisy = N.NoisyAudioTokens(store, tokenizer=tok, audio_loader=lambda i: N.peak_normalize(waves[i]))
    assert noisy.check_clean(range(6)) == 1.0
    over = noisy.store_for("white", 0.0, [1, 4])
    assert isinstance(over, MemoryTokenStore) and [c.id for c in over.clips] == ["c1", "c4"]
    assert np.array_equal(over.read(1, "visual"), store.read(4, "visual"))  # video untouched
    assert not np.array_equal(over.read(1, "audio"), store.read(4, "audio"))  # audio noisy at 0 dB
    again = noisy.store_for("white", 0.0, [4])  # cached and seeded
    assert np.array_equal(again.read(0, "audio"), over.read(1, "audio"))
    mild = noisy.store_for("babble", 40.0, [4])
    assert (np.asarray(mild.read(0, "audio")) == np.asarray(store.read(4, "audio"))).mean() > 0.8


# ---------------------------------------------------------------------------------- CLIs


def test_finetune_and_evaluate_commands(store, mae_dir, tmp_path, caplog):
    folds_file = write_folds(tmp_path / "folds.json", make_folds(speakers(store), k=3, seed=0), {})
    out = tmp_path / "out"
    argv = [f"--tokens={store.root}", f"--init={mae_dir}", f"--folds={folds_file}", f"--out={out}",
            "modalities=audio,av", "experiments=finetune,logreg", "label_fractions=0.25,1",
            "label_experiments=finetune,scratch", "max_folds=2", "train.epochs=2", "train.lr=2e-3"]
    assert finetune_stage.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["experiments"]) == {f"{e}-{m}" for e in ("finetune", "logreg") for m in ("audio", "av")}
    for r in res["experiments"].values():
        assert len(r["folds"]) == 2 and {"war", "uar", "macro_f1", "ccc"} <= set(r["summary"])
    assert res["config"]["train"]["batch_size"] == 8  # train.epochs=2 kept the other fine-tuning defaults
    assert {r["fraction"] for r in res["label_efficiency"]["rows"]} == {0.25, 1.0}
    assert {r["modalities"][0] for r in res["missing_modality"]} == {"audio", "visual"}
    md = (out / "results.md").read_text()
    assert "finetune-av" in md and "logreg-audio" in md and "Label efficiency" in md and " ± " in md
    assert (out / "label_efficiency" / "scratch-audio_1" / "fold_1" / "fold_result.json").is_file()
    for png in ("confusion_finetune-av.png", "label_efficiency.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # a rerun reuses every finished fold
    model_file = out / "finetune-av" / "fold_0" / "model" / "model.safetensors"
    mtime = model_file.stat().st_mtime_ns
    assert finetune_stage.main(argv) == 0
    assert model_file.stat().st_mtime_ns == mtime
    # evaluate: the saved fold models, each on its own test speakers, reproduce the finetune numbers
    ev = tmp_path / "eval"
    assert evaluate_stage.main([f"--model={out / 'finetune-av'}", f"--out={ev}"]) == 0
    got = json.loads((ev / "results.json").read_text())
    (exp,) = got["experiments"].values()
    want = res["experiments"]["finetune-av"]["summary"]["war"]["mean"]
    assert exp["summary"]["war"]["mean"] == pytest.approx(want)
    # and with the video missing
    assert evaluate_stage.main([f"--model={out / 'finetune-av' / 'fold_0' / 'model'}", "modalities=audio",
                                f"--out={ev / 'audio'}"]) == 0


def test_finetune_errors(store, mae_dir, tmp_path, capsys):
    assert finetune_stage.main([f"--tokens={store.root}", f"--out={tmp_path}"]) == 2
    assert "missing required setting(s): init" in capsys.readouterr().err
    other = tmp_path / "other_mae"
    VQMAEAV(mae_preset("tiny", visual_codebook_size=64)).save_pretrained(other)
    assert finetune_stage.main([f"--tokens={store.root}", f"--init={other}", f"--out={tmp_path / 'o'}"]) == 2
    assert "another tokenizer" in capsys.readouterr().err
    stamped = tmp_path / "stamped_mae"
    VQMAEAV(mae_preset("tiny")).save_pretrained(
        stamped, metadata={"token_store": {"provenance": {"audio": {"fingerprint": "0" * 64}}}})
    assert finetune_stage.main([f"--tokens={store.root}", f"--init={stamped}", f"--out={tmp_path / 'p'}"]) == 2
    err = capsys.readouterr().err
    assert "pretrained on audio tokens of tokenizer " + "0" * 64 in err
    assert store.provenance["audio"]["fingerprint"] in err  # names both tokenizers
    assert finetune_stage.main(["preset=nope"]) == 2
    cfg = finetune_stage.make_config("demo", tokens="x", train={"epochs": 7})
    assert cfg.train.epochs == 7 and cfg.train.batch_size == preset_values("finetune", "demo")["train"]["batch_size"]
    assert cfg.preset == "demo"


@pytest.mark.slow
def test_two_process_finetune_runs_and_writes_once(store, mae_dir, tmp_path):
    """`accelerate launch` with 2 CPU ranks: modality dropout leaves parameters without gradients
    in some steps (DDP must allow it), and only rank 0 writes (no duplicated metrics rows)."""
    import os
    import socket
    import subprocess
    import sys

    folds_file = write_folds(tmp_path / "folds.json", make_folds(speakers(store), k=3, seed=0), {})
    out = tmp_path / "ddp"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port), "-m", "vqmae.pipelines.finetune",
           f"--tokens={store.root}", f"--init={mae_dir}", f"--folds={folds_file}", f"--out={out}",
           "modalities=audio,av", "experiments=finetune,logreg", "modality_dropout=0.5", "max_folds=1",
           "train.epochs=2", "train.lr=2e-3", "train.progress=false"]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert set(res["experiments"]) == {f"{e}-{m}" for e in ("finetune", "logreg") for m in ("audio", "av")}
    rows = [json.loads(line) for line in (out / "finetune-av" / "fold_0" / "metrics.jsonl").open()]
    keys = [(r["step"], r["split"]) for r in rows]
    assert len(keys) == len(set(keys)) and {k[1] for k in keys} == {"train", "val"}
    assert proc.stderr.count("finetune-av: fold 1/1") == 1  # rank 1 does not log


# ------------------------------------------------------------------------------ faults


def test_init_folder_of_pickles_is_a_clear_error(store, mae_dir, tmp_path, capsys):
    """`--init DIR` where DIR holds `model.pt` (alone, or beside a config.json): one line, exit 2."""
    only_pickle = tmp_path / "pickled"
    only_pickle.mkdir()
    torch.save(VQMAEAV(mae_preset("tiny")).state_dict(), only_pickle / "model.pt")
    with_config = tmp_path / "pickled_with_config"
    with_config.mkdir()
    (with_config / "config.json").write_text((mae_dir / "config.json").read_text())
    torch.save(VQMAEAV(mae_preset("tiny")).state_dict(), with_config / "model.pt")
    for folder in (only_pickle, with_config):
        rc = finetune_stage.main([f"--tokens={store.root}", f"--init={folder}", f"--out={tmp_path / 'o'}",
                                  "max_folds=1", "train.epochs=1"])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert "Traceback" not in err and "model.pt" in err and str(folder) in err
        assert len(err.strip().splitlines()) == 1


def test_small_folds_are_flagged_in_the_log_and_the_results(store, mae_dir, tmp_path, caplog):
    """One test speaker (12 clips) and 4 training speakers: 'fold too small to mean anything'."""
    folds = make_folds(speakers(store), k=6, seed=0)[:1]
    assert len(folds[0].test) == 1
    task = infer_task(store, "classify")
    exp = Experiment("lr", lambda: EmotionClassifier.from_mae(mae_dir, num_classes=3, head="mean")[0],
                     kind="logreg", modalities=("audio",))
    with caplog.at_level("WARNING", logger="vqmae"):
        r = run_experiment(exp, store, folds, task, fast_cfg(), tmp_path / "lr")
    assert any("fold too small to mean anything" in w for w in r["folds"][0]["warnings"])
    assert r["warnings"] and "fold too small to mean anything" in caplog.text
    from vqmae.evaluation.results import results_markdown

    assert "fold too small to mean anything" in results_markdown({"experiments": {"lr": r}})
    # training speakers: 4 of 6 here; with 3 folds of 6 speakers only 2 train -> warned as well
    few = make_folds(speakers(store), k=3, seed=0)[:1]
    ids = fold_clips(store, few[0], task)
    from vqmae.evaluation.splits import fold_warnings

    assert any("training speaker" in w for w in fold_warnings(store, few[0], ids))


def test_folds_are_numbered_one_based_in_logs(store, mae_dir, tmp_path, caplog):
    folds = make_folds(speakers(store), k=3, seed=0)[:2]
    task = infer_task(store, "classify")
    exp = Experiment("ft", lambda: EmotionClassifier.from_mae(mae_dir, num_classes=3)[0], modalities=("audio",))
    with caplog.at_level("INFO", logger="vqmae"):
        run_experiment(exp, store, folds, task, fast_cfg(epochs=1), tmp_path, save_models=False)
    text = caplog.text
    assert "fold 1/2" in text and "fold 2/2" in text
    import re

    assert not re.search(r"\bfold 0\b", text), text  # one numbering: 1-based everywhere


def test_zero_uar_selection_prints_as_zero(tmp_path, caplog):
    """A model that is always wrong: the selection score (UAR - 1e-6 · cross-entropy) prints 0."""
    from vqmae.evaluation.scoring import printable

    assert f'{printable("selection", -1.615e-06):.4g}' == "0"
    assert f'{printable("selection", 0.25 - 1e-6):.4g}' == "0.25" and printable("nll", 1e-6) == 1e-6
    rows, audio = [], []
    for spk in ("a", "b", "c", "d"):
        for c in range(3):
            a = np.zeros((25, 2), dtype=np.int64)
            a[:, 0], a[:, 1] = 0, c
            rows.append({"id": f"{spk}_{c}", "speaker": spk, "label": c})
            audio.append(a)
    prov = {"audio": synthetic_provenance("audio", codebook_size=8, token_shape=(2,), frames_per_second=50)}
    store = TokenStore.open(write_token_store(tmp_path / "s", rows, {"audio": audio}, prov, classes=CLASSES))
    cfg = fast_cfg(epochs=1, batch_size=4)
    cfg.window_seconds, cfg.min_train_batches = 0.2, 0
    with caplog.at_level("INFO", logger="vqmae"):
        _, result = train_fold(ScriptedModel(10**6, 3), store, Fold(0, ["a", "b"], ["c"], ["d"]),
                               infer_task(store), cfg, tmp_path / "fold")
    assert result["val"]["uar"] == 0.0
    lines = [r.getMessage() for r in caplog.records if "selection" in r.getMessage()]
    assert any("val selection = 0)" in m for m in lines), lines
    assert not [m for m in lines if "selection -" in m or "selection = -" in m], lines


@pytest.mark.parametrize("setting, value", [
    ("num_folds", "1"), ("max_folds", "-1"), ("label_fractions", "[0.5,1.5]"), ("label_fractions", "[0]"),
    ("eval_batch_size", "0"), ("modality_dropout", "1.5"), ("label_smoothing", "-0.1"),
    ("babble_talkers", "0"), ("seed", "-2"), ("min_train_batches", "0"), ("window_seconds", "-2"),
    ("modalities", "[audio,sound]"), ("experiments", "[finetune,magic]"), ("noise", "[pink]"),
    ("train.epochs", "0"), ("train.lr", "-1e-4"), ("train.batch_size", "0"),
])
def test_bad_settings_exit_2_naming_the_setting(setting, value, tmp_path, capsys):
    rc = finetune_stage.main(["--tokens=x", "--init=none", f"--out={tmp_path}", f"{setting}={value}"])
    err = capsys.readouterr().err
    assert rc == 2 and setting in err and "Traceback" not in err, err
