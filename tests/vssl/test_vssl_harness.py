"""The VSSL audio encoder on the evaluation harness: waveform windows aligned with the token store,
`vqmae finetune --init <VSSL folder>` end to end (folds, label fractions, noise, evaluate, predict),
`vqmae predict` on a fold model from media files, and the settings it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from support.media import tone, write_media

from vqmae.data.clips import ClipConfig, load_clip
from vqmae.data.folds import make_folds, write_folds
from vqmae.data.manifest import ClipRecord, write_manifest
from vqmae.data.token_dataset import TokenDataset
from vqmae.data.token_store import TokenStore
from vqmae.data.token_writer import synthetic_provenance, write_token_store
from vqmae.errors import UserError
from vqmae.evaluation.model_builders import model_info
from vqmae.evaluation.scoring import predict_clips
from vqmae.evaluation.task import infer_task
from vqmae.pipelines import evaluate as evaluate_stage
from vqmae.pipelines import finetune as finetune_stage
from vqmae.pipelines import predict as predict_stage
from vqmae.vssl import VSSLModel, vssl_model_preset
from vqmae.vssl.classifier import VSSLClassifier
from vqmae.vssl.encoder import AudioEncoder
from vqmae.vssl.harness import VSSLBuilders, load_fold_model
from vqmae.vssl.wave_dataset import WaveDataset, clip_waves

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["low", "mid", "high"]


def wave_store(root: Path, speakers: int = 6, per_class: int = 2) -> TokenStore:
    """wav clips of 0.6–1.2 s (a chirp whose pitch is the class) under ``root/corpus``, their
    manifest, and a token store of random audio tokens (50 per second) that records the manifest as
    ``vqmae tokenize`` does."""
    rng = np.random.default_rng(0)
    corpus, records, rows, tokens = root / "corpus", [], [], []
    for s in range(speakers):
        for c in range(len(CLASSES)):
            for k in range(per_class):
                frames = int(rng.integers(15, 31))  # video frames at 25 fps
                wave = tone(frames / 25, 16000, freq=150.0 * (c + 1), seed=100 * s + 10 * c + k)
                rel = f"spk{s}/{CLASSES[c]}_{k}.wav"
                write_media(corpus / rel, wave=wave, sample_rate=16000)
                cid = f"spk{s}_{CLASSES[c]}_{k}"
                targets = {"arousal": float(c - 1), "valence": float(1 - c)}
                records.append(ClipRecord(id=cid, path=rel, speaker=f"spk{s}", label=c, label_name=CLASSES[c],
                                          targets=targets))
                rows.append({**records[-1].to_dict()})
                tokens.append(rng.integers(0, 16, (2 * frames, 4)))
    manifest = write_manifest(root / "prepared", records, root=corpus, name="waves", classes=CLASSES)
    prov = {"audio": synthetic_provenance("audio", codebook_size=16, token_shape=(4,), frames_per_second=50)}
    store_root = write_token_store(root / "tokens", rows, {"audio": tokens}, prov, classes=CLASSES)
    meta = json.loads((store_root / "store.json").read_text())
    meta["manifest"] = str(manifest)
    meta["clip_config"] = {"sample_rate": 16000, "fps": 25.0, "detect_faces": False}
    (store_root / "store.json").write_text(json.dumps(meta))
    return TokenStore.open(store_root)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TokenStore:
    return wave_store(tmp_path_factory.mktemp("waves"))


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    torch.manual_seed(123)  # not the fold seed: "scratch" must not start from the same weights
    folder = tmp_path_factory.mktemp("vssl") / "audio_encoder"
    AudioEncoder(vssl_model_preset("tiny").encoder).save_pretrained(folder)
    return folder


def test_wave_windows_align_with_the_store(store):
    ids = list(range(0, len(store), 2))
    tok = TokenDataset(store, ids, 0.4, "all", ("audio",), stride_seconds=0.2)
    ds = WaveDataset(store, ids, 0.4, "all", stride_seconds=0.2)
    assert len(ds) == len(tok) and ds.window_samples == 6400 and ds.modalities == ("wave",)
    assert np.array_equal(ds.window_starts(), tok.window_starts())
    cfg = ClipConfig(detect_faces=False)
    for j in (0, 1, len(ds) - 1):
        item, t = ds[j], tok[j]
        assert set(item) == {"wave", "label", "targets", "clip", "start", "valid"}
        assert item["wave"].dtype == torch.float32 and item["wave"].shape == (6400,)
        i = item["clip"]
        assert i == t["clip"] and item["start"] == t["start"] and item["label"] == t["label"] == store.labels[i]
        np.testing.assert_array_equal(item["targets"].numpy(), store.targets[i])
        clip = store.clips[i]
        audio = load_clip(store.root.parent / "corpus" / clip.path, cfg, modalities=("audio",)).audio
        s0 = item["start"] * 320
        np.testing.assert_array_equal(item["wave"].numpy(), audio[s0:s0 + 6400])  # peak-normalised clip
        assert np.abs(audio).max() == pytest.approx(1.0)
    # random windows: seeded, new ones each epoch; a clip shorter than the window loops its audio
    rnd = WaveDataset(store, ids, 0.4, "random", seed=3)
    first = rnd.window_starts().copy()
    assert np.array_equal(first, WaveDataset(store, ids, 0.4, "random", seed=3).window_starts())
    rnd.set_epoch(1)
    assert not np.array_equal(first, rnd.window_starts())
    long = WaveDataset(store, [0], 2.0, "center")
    steps = int(store.frames("audio")[0])
    w = long[0]["wave"].numpy()
    assert long[0]["valid"] == steps < long.window
    n = steps * 320
    np.testing.assert_array_equal(w[n:], w[:w.shape[0] - n])
    # each clip is decoded once per process
    load = clip_waves(store)
    assert load(5) is load(5) is clip_waves(store)(5)


def test_a_moved_corpus_is_a_user_error_naming_the_file(tmp_path):
    store = wave_store(tmp_path, speakers=1, per_class=1)
    (tmp_path / "corpus").rename(tmp_path / "elsewhere")
    ds = WaveDataset(store, None, 0.4, "all")
    with pytest.raises(UserError, match=r"corpus/spk0/low_0\.wav.*not found"):
        ds[0]


def test_finetune_with_a_vssl_encoder_end_to_end(store, encoder_dir, tmp_path, capsys):
    speakers = sorted(set(store.speakers))
    folds_file = write_folds(tmp_path / "folds.json", make_folds(speakers, k=3, seed=0), {})
    out = tmp_path / "out"
    argv = [f"--tokens={store.root}", f"--init={encoder_dir}", f"--folds={folds_file}", f"--out={out}",
            "modalities=audio", "experiments=finetune,scratch,logreg", "window_seconds=0.4", "max_folds=2",
            "train.epochs=2", "train.lr=3e-3", "label_fractions=0.5,1", "label_experiments=scratch",
            "noise=babble", "snr_db=10", "noise_experiments=finetune-audio"]
    assert finetune_stage.main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["experiments"]) == {"finetune-audio", "scratch-audio", "logreg-audio"}
    for r in res["experiments"].values():
        assert len(r["folds"]) == 2 and {"war", "uar", "ccc"} <= set(r["summary"])
    assert {(r["experiment"], r["fraction"]) for r in res["label_efficiency"]["rows"]} == {
        ("scratch-audio", 0.5), ("scratch-audio", 1.0)}
    assert {(r["noise"], r["snr_db"]) for r in res["noise"]["rows"]} == {("clean", None), ("babble", 10.0)}
    saved = out / "finetune-audio" / "fold_0" / "model"
    meta = json.loads((saved / "config.json").read_text())
    assert meta["architecture"] == "vssl-classifier" and meta["config"]["window_seconds"] == 0.4
    assert meta["info"]["inputs"] == "wave" and meta["info"]["tokenizers"] == {}
    assert meta["info"]["fold"]["test"] == res["experiments"]["finetune-audio"]["folds"][0]["test_speakers"]
    # the saved fold models are evaluable (each on its own test speakers, the same numbers) ...
    assert evaluate_stage.main([f"--model={out / 'finetune-audio'}", f"--out={tmp_path / 'ev'}"]) == 0
    (exp,) = json.loads((tmp_path / "ev" / "results.json").read_text())["experiments"].values()
    assert exp["summary"]["uar"]["mean"] == pytest.approx(res["experiments"]["finetune-audio"]["summary"]["uar"]["mean"])
    # ... and `vqmae predict` runs them on media files (the experiment folder: its 2 fold models averaged)
    files = [str(store.root.parent / "corpus" / store.clips[i].path) for i in (0, 7)]
    assert predict_stage.main([f"--model={out / 'finetune-audio'}", f"--out={tmp_path / 'p.json'}", *files]) == 0
    pred = json.loads((tmp_path / "p.json").read_text())
    assert pred["num_models"] == 2 and [r["file"] for r in pred["predictions"]] == files


def test_predict_runs_a_vssl_fold_model_on_media(store, encoder_dir, tmp_path, capsys):
    """`vqmae predict` on a saved VSSL fold model: one row per usable file, the harness's
    predictions (its windows of the same clips scored through WaveDataset), bad files reported."""
    torch.manual_seed(0)
    task = infer_task(store, "both")
    clf = VSSLClassifier.from_encoder(encoder_dir, num_classes=task.num_classes, num_targets=task.num_targets,
                                      window_seconds=0.4).eval()
    clf.info = model_info(store, task, str(encoder_dir), 0.4, inputs="wave")
    clf.save_pretrained(tmp_path / "model")
    ids = [0, 5, 11, 20]
    files = [str(store.root.parent / "corpus" / store.clips[i].path) for i in ids]
    video = write_media(tmp_path / "talk.mp4", frames=np.full((20, 32, 32, 3), 90, np.uint8),
                        wave=tone(0.8, 16000, freq=300.0), sample_rate=16000)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav file")
    silent = write_media(tmp_path / "silent.wav", wave=np.zeros(16000, np.float32), sample_rate=16000)
    argv = [f"--model={tmp_path / 'model'}", f"--out={tmp_path / 'p.json'}", *files[:2], str(broken),
            *files[2:], str(silent), str(video)]
    assert predict_stage.main(argv) == 0
    out = json.loads((tmp_path / "p.json").read_text())
    rows = out["predictions"]
    assert [r["file"] for r in rows] == [*files, str(video)] and out["classes"] == CLASSES
    assert {e["file"]: e["kind"] for e in out["errors"]}[str(silent)] == "silent"
    assert [e["file"] for e in out["errors"]] == [str(broken), str(silent)]
    for r in rows:
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
        assert {"arousal", "valence", "windows", "seconds"} <= set(r)
    # the harness's scoring of the same clips (windows every window length, as predict's default)
    model, _ = load_fold_model(tmp_path / "model")
    ref = predict_clips(model, WaveDataset(store, ids, 0.4, "all"), task)
    for k, r in enumerate(rows[:4]):
        np.testing.assert_allclose([r["probabilities"][c] for c in CLASSES], ref.probs[k], atol=1e-5)
        np.testing.assert_allclose([r["arousal"], r["valence"]], ref.values[k], atol=1e-5)
        assert r["label"] == CLASSES[int(ref.preds[k])] and r["windows"] == int(ref.windows[k])
    # every file failing: exit 2, a summary line naming each file and its kind
    capsys.readouterr()
    assert predict_stage.main([f"--model={tmp_path / 'model'}", str(broken), str(silent)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after each file's logged warning
    assert last.startswith("vqmae predict: error: every file failed (2)") and "silent.wav: silent" in last
    assert "broken.wav: corrupt" in last


def test_vssl_init_reads_audio_only(store, encoder_dir, tmp_path, capsys):
    base = [f"--tokens={store.root}", f"--init={encoder_dir}", f"--out={tmp_path / 'o'}"]
    assert finetune_stage.main([*base, "modalities=av"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "modalities=av" in err and "reads audio only" in err
    assert finetune_stage.main([*base, "modalities=audio", "head=query2emo"]) == 2
    assert "head=query2emo" in capsys.readouterr().err
    # a whole `vssl` model folder works as --init too (its encoder); scratch keeps only the input scaling
    torch.manual_seed(1)
    whole = VSSLModel(vssl_model_preset("tiny", task="audio"))
    whole.encoder.mel_mean.fill_(-3.0)
    whole.save_pretrained(tmp_path / "model")
    builders = VSSLBuilders(str(tmp_path / "model"), infer_task(store), window_seconds=0.4)
    pre, scratch = builders(("audio",), True)(), builders(("audio",), False)()
    for k, v in whole.encoder.state_dict().items():
        assert torch.equal(pre.encoder.state_dict()[k], v)
    assert torch.equal(scratch.encoder.mel_mean, whole.encoder.mel_mean)
    assert not torch.equal(scratch.encoder.proj.weight, whole.encoder.proj.weight)
