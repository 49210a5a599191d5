"""Token store format, reader windows, safety checks and `vqmae tokens` (no tokenization here)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vqmae.data.token_dataset import TokenDataset, frame_grid
from vqmae.data.token_store import STORE_JSON, StoreError, TokenStore, verify_store
from vqmae.data.token_writer import synthetic_provenance, write_token_store
from vqmae.pipelines import tokens as tokens_cli

K_A, K_V = 256, 512


def _provenance(a_shape=(8,), v_shape=(3, 3)):
    return {"audio": synthetic_provenance("audio", codebook_size=K_A, token_shape=a_shape, frames_per_second=50),
            "visual": synthetic_provenance("visual", codebook_size=K_V, token_shape=v_shape, frames_per_second=25)}


def _clip_tokens(i: int, tv: int):
    """Tokens whose values encode (clip, frame): audio frame f -> f % 256, visual frame c -> (c + i) % 512."""
    a = np.broadcast_to((np.arange(2 * tv) % K_A)[:, None], (2 * tv, 8)).copy()
    v = np.broadcast_to(((np.arange(tv) + i) % K_V)[:, None, None], (tv, 3, 3)).copy()
    return a, v


@pytest.fixture()
def store_data(tmp_path):
    lengths = [50, 73, 120, 30, 51, 200, 12, 99, 64, 50, 81]   # video frames; 30 and 12 are short
    rows, audio, visual = [], [], []
    for i, tv in enumerate(lengths):
        rows.append({"id": f"clip{i}", "speaker": f"s{i % 3}", "label": None if i == 4 else i % 2,
                     "label_name": None if i == 4 else "ab"[i % 2],
                     "targets": {"arousal": 0.5, "valence": -0.25} if i != 2 else {}})
        a, v = _clip_tokens(i, tv)
        audio.append(a)
        visual.append(v)
    root = write_token_store(tmp_path / "store", rows, {"audio": audio, "visual": visual}, _provenance(),
                             classes=["a", "b"], clips_per_shard=4)
    return root, lengths, audio, visual


def test_round_trip_and_layout(store_data):
    root, lengths, audio, visual = store_data
    store = TokenStore.open(root)
    assert store.modalities == ["audio", "visual"] and store.classes == ["a", "b"]
    assert len(store) == len(lengths) and [c.id for c in store.clips] == [f"clip{i}" for i in range(len(lengths))]
    assert store.meta["num_shards"] == 3 and sorted(p.name for p in (root / "visual").iterdir()) == [
        "shard-000000.npy", "shard-000001.npy", "shard-000002.npy"]
    for i in range(len(lengths)):
        a = store.read(i, "audio")
        assert a.dtype == np.uint16 and not a.flags.owndata and not a.flags.writeable  # a memmap view
        np.testing.assert_array_equal(a, audio[i])
        np.testing.assert_array_equal(store.read(f"clip{i}", "visual"), visual[i])
        assert store.clips[i].frames == {"audio": 2 * lengths[i], "visual": lengths[i]}
    prov = store.provenance["visual"]
    assert prov["token_shape"] == [3, 3] and prov["codebook_size"] == K_V and prov["format_version"] == 1
    assert verify_store(root) == []
    # columns (no per-clip Python objects until store.clips is used)
    store = TokenStore.open(root)
    TokenDataset(store, mode="all")[0]
    assert store._clips is None and store.ids[2] == "clip2" and store.speakers[2] == "s2"
    assert store.labels.tolist()[:5] == [0, 1, 0, 1, -1]
    np.testing.assert_allclose(store.targets[0], [0.5, -0.25])
    assert np.isnan(store.targets[2]).all()
    assert store.clip_indices(speakers=["s1"]).tolist() == [1, 4, 7, 10]
    assert store.clip_indices(speakers=["s1"], labelled=True).tolist() == [1, 7, 10]
    assert store.clips[3].id == "clip3" and store.clips[3].label_name == "b"
    assert pickle.loads(pickle.dumps(store))._clips is None


def ds_per_step(store):
    return TokenDataset(store).per_step


def test_frame_grid():
    assert frame_grid({"audio": 50, "visual": 25}) == (25, {"audio": 2, "visual": 1})
    assert frame_grid({"audio": 50}) == (50, {"audio": 1})
    grid, per = frame_grid({"a": 12.5, "v": 25})
    assert grid == 12.5 and per == {"a": 1, "v": 2}


@pytest.mark.parametrize("mode", ["random", "center", "all"])
def test_windows_are_aligned(store_data, mode):
    root, lengths, audio, visual = store_data
    ds = TokenDataset(TokenStore.open(root), window_seconds=2.0, mode=mode, seed=3)
    assert ds.window_frames == {"audio": 100, "visual": 50}
    for j in range(len(ds)):
        item = ds[j]
        i, s = int(item["clip"]), int(item["start"])
        assert item["audio"].shape == (100, 8) and item["visual"].shape == (50, 3, 3)
        assert item["audio"].dtype == torch.int32 and item["visual"].dtype == torch.int32  # embedded as is
        if j == 0:
            ds64 = TokenDataset(TokenStore.open(root), window_seconds=2.0, mode=mode, seed=3, index_dtype="int64")
            assert ds64[0]["visual"].dtype == torch.int64 and torch.equal(ds64[0]["visual"], item["visual"].long())
        if lengths[i] >= 50:
            np.testing.assert_array_equal(item["visual"].numpy(), visual[i][s:s + 50])
            np.testing.assert_array_equal(item["audio"].numpy(), audio[i][2 * s:2 * s + 100])
            # audio frame 2c <-> video frame c
            assert int(item["audio"][0, 0]) == (2 * s) % K_A and int(item["visual"][0, 0, 0]) == (s + i) % K_V
            assert int(item["valid"]) == 50


def test_labels_targets(store_data):
    root, *_ = store_data
    ds = TokenDataset(root, mode="center")
    by_clip = {int(ds[j]["clip"]): ds[j] for j in range(len(ds))}
    assert int(by_clip[1]["label"]) == 1 and int(by_clip[4]["label"]) == -1
    np.testing.assert_allclose(by_clip[0]["targets"].numpy(), [0.5, -0.25])
    assert by_clip[2]["targets"].dtype == torch.float32 and torch.isnan(by_clip[2]["targets"]).all()


def test_random_windows_depend_on_seed_epoch_index(store_data):
    root, *_ = store_data
    store = TokenStore.open(root)
    ds = TokenDataset(store, mode="random", seed=0)
    starts0 = [ds.window_start(j) for j in range(len(ds))]
    assert starts0 == [TokenDataset(store, mode="random", seed=0).window_start(j) for j in range(len(ds))]
    ds.set_epoch(1)
    starts1 = [ds.window_start(j) for j in range(len(ds))]
    assert starts1 != starts0
    # windows spread over the clip (clip 5 has 200 frames: 151 possible starts)
    seen = set()
    for e in range(40):
        ds.set_epoch(e)
        seen.add(ds.window_start(5))
    assert len(seen) > 20


def test_center_and_all_modes(store_data):
    root, lengths, *_ = store_data
    store = TokenStore.open(root)
    center = TokenDataset(store, mode="center")
    assert center.window_start(5) == (200 - 50) // 2
    alls = TokenDataset(store, mode="all")
    for i, n in enumerate(lengths):
        starts = sorted(int(s) for c, s in zip(alls.item_clip, alls.item_start) if c == i)
        if n <= 50:
            assert starts == [0]
        else:
            assert starts[0] == 0 and starts[-1] == n - 50  # tiles the clip, last window ends at its end
            assert all(b - a == 50 for a, b in zip(starts[:-2], starts[1:-1]))
    assert len(alls) == sum(max(1, -(-n // 50)) for n in lengths)
    stride = TokenDataset(store, mode="all", stride_seconds=1.0, clip_ids=["clip5"])
    assert [int(s) for s in stride.item_start] == list(range(0, 151, 25))


def test_short_clip_rule(store_data):
    root, lengths, audio, visual = store_data
    store = TokenStore.open(root)
    i = 6  # 12 video frames, 24 audio frames
    loop = TokenDataset(store, clip_ids=[i], mode="center", short="loop")[0]
    np.testing.assert_array_equal(loop["visual"].numpy(), visual[i][np.arange(50) % 12])
    np.testing.assert_array_equal(loop["audio"].numpy(), audio[i][np.arange(100) % 24])
    assert int(loop["valid"]) == 12 and loop["valid"] * ds_per_step(store)["audio"] == 24
    edge = TokenDataset(store, clip_ids=[i], mode="center", short="edge")[0]
    np.testing.assert_array_equal(edge["visual"].numpy(), visual[i][np.minimum(np.arange(50), 11)])
    drop = TokenDataset(store, mode="random", short="drop")
    assert set(drop.item_clip.tolist()) == {j for j, n in enumerate(lengths) if n >= 50}


def test_clip_subset_modalities_and_dataloader_workers(store_data):
    root, lengths, audio, visual = store_data
    store = TokenStore.open(root)
    ds = TokenDataset(store, clip_ids=["clip2", "clip5", 7], mode="random", modalities=("visual",), seed=1)
    assert ds.item_clip.tolist() == [2, 5, 7] and "audio" not in ds[0]
    direct = [ds[j]["visual"] for j in range(len(ds))]
    pickle.loads(pickle.dumps(ds))  # picklable (spawned workers)
    loader = DataLoader(ds, batch_size=3, num_workers=2)
    batch = next(iter(loader))
    assert batch["visual"].shape == (3, 50, 3, 3)
    assert batch["valid"].dtype == torch.int64 and batch["valid"].tolist() == [50, 50, 50]
    assert batch["label"].shape == (3,) and batch["targets"].shape == (3, 2)
    torch.testing.assert_close(batch["visual"], torch.stack(direct))
    audio_only = TokenDataset(store, modalities=("audio",), window_seconds=0.5)
    assert audio_only.window_frames == {"audio": 25}
    with pytest.raises(ValueError, match="multiple of the frame grid"):
        TokenDataset(store, window_seconds=2.01)


def test_fingerprint_mismatch_names_both(store_data):
    root, *_ = store_data
    store = TokenStore.open(root)
    have = store.provenance["visual"]["fingerprint"]
    store.check_tokenizer("visual", have)
    with pytest.raises(StoreError) as e:
        store.check_tokenizer("visual", "f" * 64)
    assert have in str(e.value) and "f" * 64 in str(e.value)
    with pytest.raises(StoreError, match="f{64}"):
        TokenStore.open(root, fingerprints={"audio": "f" * 64})


def test_unknown_version_names_both(store_data):
    root, *_ = store_data
    meta = json.loads((root / STORE_JSON).read_text())
    meta["format_version"] = 7
    (root / STORE_JSON).write_text(json.dumps(meta))
    with pytest.raises(StoreError) as e:
        TokenStore.open(root)
    assert "version 7" in str(e.value) and "version 1" in str(e.value)


def test_unfinished_store_is_refused(store_data):
    root, *_ = store_data
    (root / STORE_JSON).unlink()
    with pytest.raises(StoreError, match="unfinished"):
        TokenStore.open(root)


def test_verify_detects_corruption(store_data, capsys):
    root, *_ = store_data
    assert tokens_cli.main(["verify", str(root)]) == 0
    shard = root / "visual" / "shard-000001.npy"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify_store(root)
    assert any("shard-000001.npy" in p and "checksum" in p for p in problems)
    assert tokens_cli.main(["verify", str(root)]) == 1
    assert "shard-000001.npy" in capsys.readouterr().err
    # a truncated shard is caught without checksums too
    shard.write_bytes(bytes(data[:-18]))
    assert any("bytes" in p for p in verify_store(root, checksums=False))


def test_verify_detects_index_inconsistency(store_data):
    root, *_ = store_data
    lines = (root / "index.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    row["offset"]["audio"] += 2
    lines[1] = json.dumps(row)
    (root / "index.jsonl").write_text("\n".join(lines) + "\n")
    problems = verify_store(root)
    assert any("index.jsonl" in p and "checksum" in p for p in problems)
    assert any("offset" in p for p in problems)


def test_info(store_data, capsys):
    root, lengths, *_ = store_data
    assert tokens_cli.main(["info", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["clips"] == len(lengths) and info["modalities"]["visual"]["frames"] == sum(lengths)
    assert tokens_cli.main(["info", str(root)]) == 0
    assert "fingerprint" in capsys.readouterr().out
    assert tokens_cli.main(["info", str(root.parent / "nope")]) == 2


@pytest.mark.parametrize("fused", [True, False])
def test_int32_windows_work_in_every_model(fused):
    """Windows come as int32 (the stored uint16 widened once, not int64 per window): the MAE's
    loss (fused CPU path and the plain cross-entropy GPU path), its predict and the classifier
    give exactly what int64 tokens give."""
    from vqmae.mae import VQMAEAV, MaskingConfig, mae_preset, make_masks
    from vqmae.mae.classifier import ClassifierConfig, EmotionClassifier, encoder_config_for

    torch.manual_seed(0)
    cfg = mae_preset("tiny")
    model = VQMAEAV(cfg).eval()
    g = torch.Generator().manual_seed(0)
    tok = {m: torch.randint(0, cfg.spec(m).codebook_size, (2, cfg.spec(m).frames, *cfg.spec(m).token_shape),
                            generator=g) for m in cfg.modalities}
    grids = {m: cfg.spec(m).grid for m in cfg.modalities}
    masks = make_masks(grids, 2, MaskingConfig(), torch.Generator().manual_seed(1))
    out64 = model({m: t.long() for m, t in tok.items()}, masks, fused_ce=fused)
    out32 = model({m: t.int() for m, t in tok.items()}, masks, fused_ce=fused)
    for k in out64:
        torch.testing.assert_close(out32[k], out64[k])
    pred = model.predict({m: t.int() for m, t in tok.items()}, masks)
    assert all(torch.equal(pred[m].long(), p) for m, p in model.predict(tok, masks).items())
    clf = EmotionClassifier(ClassifierConfig(encoder=encoder_config_for(cfg, cfg.modalities), num_classes=3)).eval()
    torch.testing.assert_close(clf(**{m: t.int() for m, t in tok.items()}), clf(**tok))
