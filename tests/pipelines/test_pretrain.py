"""`vqmae pretrain` on a small generated token store: outputs, baselines, exact resume, errors."""

import json

import numpy as np
import pytest
import torch

from vqmae.checkpoint import load_pretrained, read_model_config
from vqmae.data.token_writer import synthetic_provenance, write_token_store
from vqmae.io import read_jsonl
from vqmae.mae import VQMAEAV, pretraining
from vqmae.pipelines import pretrain
from vqmae.training import list_checkpoints

pytestmark = pytest.mark.usefixtures("one_thread")


def structured_tokens(rng, frames, shape, k):
    """Each clip repeats its own random code pattern over time (with a little noise):
    masked codes are predictable from the visible frames, not from code frequencies."""
    pattern = rng.integers(0, k, size=shape)
    codes = np.broadcast_to(pattern, (frames, *shape)).copy()
    noise = rng.random(codes.shape) < 0.05
    codes[noise] = rng.integers(0, k, size=int(noise.sum()))
    return codes.astype(np.uint16)


def make_store(root, fingerprint=""):
    rng = np.random.default_rng(0)
    rows, audio, visual = [], [], []
    for i in range(24):
        seconds = 0.4 + 0.04 * (i % 5)
        rows.append({"id": f"s{i % 4}_c{i}", "speaker": f"s{i % 4}", "label": i % 3,
                     "label_name": "abc"[i % 3]})
        audio.append(structured_tokens(rng, round(50 * seconds), (8,), 16))
        visual.append(structured_tokens(rng, round(25 * seconds), (6, 6), 32))
    prov = {"audio": synthetic_provenance("audio", codebook_size=16, token_shape=(8,), frames_per_second=50.0,
                                          fingerprint=fingerprint),
            "visual": synthetic_provenance("visual", codebook_size=32, token_shape=(6, 6), frames_per_second=25.0)}
    prov["audio"]["tokenizer_dir"] = "/nowhere/audio_tokenizer"
    write_token_store(root, rows, {"audio": audio, "visual": visual}, prov, classes=["a", "b", "c"])
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store") / "tokens")


ARGS = ["--preset", "tiny", "window_seconds=0.4", "train.epochs=3", "train.batch_size=4",
        "train.progress=false", "val_fraction=0.25"]


def test_pretrain_writes_model_metrics_and_baselines(store, tmp_path):
    out = tmp_path / "run"
    assert pretrain.main(["--tokens", str(store), "--out", str(out), *ARGS]) == 0
    model = load_pretrained(out / "model")
    assert isinstance(model, VQMAEAV) and model.config.modalities == ("audio", "visual")
    meta = read_model_config(out / "model")
    assert meta["token_store"]["provenance"]["audio"]["tokenizer_dir"] == "/nowhere/audio_tokenizer"
    assert meta["token_store"]["provenance"]["visual"]["codebook_size"] == 32
    rows = read_jsonl(out / "metrics.jsonl")
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    assert train and {"loss_audio", "loss_visual", "acc_audio", "acc_visual", "lr"} <= set(train[0])
    assert len(val) == 3 and {"acc_audio", "freq_acc_visual", "pos_freq_acc_audio"} <= set(val[0])
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["baselines"]["freq_acc_visual"] <= summary["baselines"]["pos_freq_acc_visual"] <= 1
    assert summary["val_clips"] == 6 and summary["train_clips"] == 18
    assert (out / "curves.png").stat().st_size > 1000
    log = (out / "train.log").read_text()
    assert "base_lr" in log and "code-frequency baselines" in log


def test_pretrain_resume_matches_uninterrupted_run(store, tmp_path, monkeypatch):
    args = [*ARGS, "train.checkpoint_every=3", "val_fraction=0"]
    full = tmp_path / "full"
    assert pretrain.main(["--tokens", str(store), "--out", str(full), *args]) == 0

    original = pretraining.make_loss_fn
    calls = {"n": 0}

    def crashing(cfg, mae_cfg):
        fn = original(cfg, mae_cfg)

        def wrapped(model, batch, info):
            calls["n"] += 1
            if calls["n"] == 5:  # after the checkpoint at step 3
                raise KeyboardInterrupt
            return fn(model, batch, info)
        return wrapped

    out = tmp_path / "interrupted"
    monkeypatch.setattr(pretraining, "make_loss_fn", crashing)
    with pytest.raises(KeyboardInterrupt):
        pretrain.main(["--tokens", str(store), "--out", str(out), *args])
    monkeypatch.setattr(pretraining, "make_loss_fn", original)
    assert int(list_checkpoints(out)[-1].name.split("_")[1]) == 3
    assert pretrain.main(["--tokens", str(store), "--out", str(out), *args, "--resume"]) == 0
    a, b = load_pretrained(full / "model"), load_pretrained(out / "model")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_unimodal_audio_pretraining(store, tmp_path):
    out = tmp_path / "audio"
    assert pretrain.main(["--tokens", str(store), "--out", str(out), *ARGS, "modalities=[audio]",
                          "train.epochs=1", "masking.audio_ratio=0.6"]) == 0
    model = load_pretrained(out / "model")
    assert model.config.modalities == ("audio",)
    rows = read_jsonl(out / "metrics.jsonl")
    assert all("loss_visual" not in r for r in rows)
    assert any(r.get("mask_ratio_audio") == 0.6 for r in rows)


def test_contrastive_term_is_logged(store, tmp_path):
    out = tmp_path / "c"
    assert pretrain.main(["--tokens", str(store), "--out", str(out), *ARGS, "train.epochs=1",
                          "loss.contrastive_weight=0.5", "model.fusion=caf"]) == 0
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if r["split"] == "train"]
    assert all(np.isfinite(r["contrastive"]) for r in rows)
    assert load_pretrained(out / "model").pool is not None


def test_patch_sizes_that_do_not_fit_are_a_clear_error(store, tmp_path, capsys):
    code = pretrain.main(["--tokens", str(store), "--out", str(tmp_path / "p"), "--preset", "paper",
                          "train.progress=false"])
    assert code == 2
    err = capsys.readouterr().err
    assert "does not fit" in err and "divisors" in err and "preset" in err


def test_resume_refuses_another_token_store(store, tmp_path, capsys):
    """Fault 1: --resume with a different store ran and recorded the new store's fingerprints."""
    out = tmp_path / "run"
    args = [*ARGS, "train.epochs=1", "val_fraction=0", "example=false"]
    assert pretrain.main(["--tokens", str(store), "--out", str(out), *args]) == 0
    other = make_store(tmp_path / "other", fingerprint="f" * 64)
    capsys.readouterr()
    code = pretrain.main(["--tokens", str(other), "--out", str(out), *args, "--resume"])
    assert code == 2
    err = capsys.readouterr().err
    old = json.loads((out / "model" / "config.json").read_text())
    old_fp = old["token_store"]["provenance"]["audio"]["fingerprint"]
    assert "--resume" in err and old_fp[:12] in err and "f" * 12 in err and str(other) in err
    assert "Traceback" not in err
    # the same store still resumes
    assert pretrain.main(["--tokens", str(store), "--out", str(out), *args, "--resume"]) == 0


def test_diverging_resume_stays_recoverable(store, tmp_path, capsys):
    """Fault 2 end to end: resuming with lr=1e6 must not leave a NaN/inf checkpoint behind."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    args = [*ARGS, "train.epochs=2", "val_fraction=0", "example=false", "train.keep_checkpoints=1",
            "train.checkpoint_every=1"]
    assert pretrain.main(["--tokens", str(store), "--out", str(out), *args]) == 0
    capsys.readouterr()
    code = pretrain.main(["--tokens", str(store), "--out", str(out), *args, "train.epochs=6",
                          "train.lr=1e6", "--resume"])
    err = capsys.readouterr().err
    assert code == 1 and "non-finite" in err and "Traceback" not in err
    newest = list_checkpoints(out)[-1]  # the weights diverged after a step whose loss was finite
    for t in load_file(str(newest / "model.safetensors")).values():
        assert torch.isfinite(t).all()
    # --resume loads it (a lower lr from there is the user's call; the loader never sees NaN)
    code = pretrain.main(["--tokens", str(store), "--out", str(out), *args, "train.epochs=4", "train.lr=1e-6",
                          "--resume"])
    assert code in (0, 1) and f"resumed from {newest}" in (out / "train.log").read_text()


def test_every_pretrain_preset_has_an_architecture():
    from vqmae.mae.config import preset_names as architectures
    from vqmae.presets import preset_names

    assert preset_names("pretrain") == architectures() == ["paper", "base", "demo", "tiny"]
    cfg = pretrain.PretrainConfig(tokens="t", out="o")
    assert cfg.train.epochs == 10  # the class default; the preset applies when parsing
    from vqmae.config import parse_config

    cfg = parse_config(pretrain.PretrainConfig, ["tokens=t", "out=o", "preset=demo"], presets="pretrain")
    assert (cfg.window_seconds, cfg.train.epochs, cfg.train.base_lr) == (1.0, 24, 3.2e-2)
