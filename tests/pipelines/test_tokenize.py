"""The tokenize job: store content, errors, resume after kill -9, 2 processes = 1 process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import support.tokenize_fixture as fx
import torch

from vqmae.data.token_dataset import TokenDataset
from vqmae.data.token_store import TokenStore, verify_store
from vqmae.pipelines import tokenize

REPO = Path(__file__).resolve().parents[2]


def _args(corpus: Path, out: Path, *extra: str, seed: int = 0) -> list[str]:
    return ["--manifest", str(corpus / "manifest.jsonl"), "--audio-tokenizer", str(corpus / f"audio_tok{seed}"),
            "--visual-tokenizer", str(corpus / f"visual_tok{seed}"), "--out", str(out),
            "--loader", fx.LOADER, "--progress", "false", *extra]


def _env(**kw: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), str(REPO), env.get("PYTHONPATH", "")])
    env.update(kw)
    return env


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    fx.make_corpus(d, n=30, broken=(5,))
    fx.save_tokenizers(d, seed=0)
    fx.save_tokenizers(d, seed=1)
    return d


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """An uninterrupted 1-process run."""
    out = tmp_path_factory.mktemp("ref") / "store"
    assert tokenize.main(_args(corpus, out, "--clips-per-shard", "4")) == 0
    return out


def test_store_holds_the_tokenizers_output(corpus, reference, capsys):
    store = TokenStore.open(reference)
    audio = fx.FakeAudioTok.from_pretrained(corpus / "audio_tok0")
    visual = fx.FakeVisualTok.from_pretrained(corpus / "visual_tok0")
    store.check_tokenizer("audio", audio.fingerprint())
    store.check_tokenizer("visual", visual.fingerprint())
    assert len(store) == 29 and "c0005" not in [c.id for c in store.clips]
    assert [c.id for c in store.clips] == [f"c{i:04d}" for i in range(30) if i != 5]  # manifest order
    for c in store.clips[:6]:
        clip = fx.load_clip(str(corpus / c.path), {})
        with torch.no_grad():
            a = audio.tokenize(torch.from_numpy(clip.audio)).numpy()
            v = visual.tokenize(torch.from_numpy(clip.faces)).numpy()
        np.testing.assert_array_equal(store.read(c.id, "audio"), a)
        np.testing.assert_array_equal(store.read(c.id, "visual"), v)
        assert c.frames["audio"] == 2 * c.frames["visual"]
        assert c.speaker and c.label_name in ("a", "b", "c") and "arousal" in c.targets
    errors = [json.loads(x) for x in (reference / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and errors[0]["id"] == "c0005"
    assert errors[0]["file"].endswith("clip0005.json") and "cannot decode" in errors[0]["reason"]
    prov = store.provenance["visual"]
    assert prov["fingerprint"] == visual.fingerprint() and prov["token_shape"] == [4, 4]
    assert prov["codebook_size"] == 40 and prov["frames_per_second"] == 25.0 and prov["tokenizer_config"]
    assert verify_store(reference) == []
    item = TokenDataset(store, mode="center")[0]
    assert item["audio"].shape == (100, 4) and item["visual"].shape == (50, 4, 4)


def test_rerun_skips_finished_work(corpus, reference, tmp_path, capsys):
    out = tmp_path / "store"
    assert tokenize.main(_args(corpus, out, "--clips-per-shard", "4")) == 0
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "visual").iterdir()}
    assert tokenize.main(_args(corpus, out, "--clips-per-shard", "4")) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "visual").iterdir()} == mtimes
    assert fx.store_files(out) == fx.store_files(reference)


def _run_and_kill(corpus: Path, out: Path, after_parts: int) -> None:
    """Start a slow tokenize subprocess, kill -9 its whole process group once parts appear."""
    proc = subprocess.Popen([sys.executable, "-m", "vqmae.pipelines.tokenize",
                             *_args(corpus, out, "--clips-per-shard", "4", "--num-workers", "2")],
                            cwd=REPO, env=_env(FAKE_SLEEP="0.04"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(list((out / "parts").glob("part-*.json"))) >= after_parts:
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the job and its DataLoader workers
        proc.wait()


def test_kill_9_then_rerun_equals_uninterrupted_run(corpus, reference, tmp_path):
    out = tmp_path / "store"
    _run_and_kill(corpus, out, after_parts=2)
    assert not (out / "store.json").exists(), "the job finished before it was killed"
    done_before = len(list((out / "parts").glob("part-*.json")))
    assert 2 <= done_before < 8
    _run_and_kill(corpus, out, after_parts=done_before + 2)  # killed a second time, further on
    assert not (out / "store.json").exists()
    assert tokenize.main(_args(corpus, out, "--clips-per-shard", "4")) == 0
    assert fx.store_files(out) == fx.store_files(reference)  # identical tokens, index, errors, metadata
    store = TokenStore.open(out)
    ids = [c.id for c in store.clips]
    assert len(ids) == len(set(ids)) == 29
    assert verify_store(out) == []


def test_two_processes_equal_one(corpus, reference, tmp_path):
    out = tmp_path / "store"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "-m", "vqmae.pipelines.tokenize", *_args(corpus, out, "--clips-per-shard", "4")],
                       cwd=REPO, env=_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "tokenize[1/2]" in r.stderr and "tokenize[2/2]" in r.stderr
    assert fx.store_files(out) == fx.store_files(reference)


def test_independent_jobs_then_merge(corpus, reference, tmp_path):
    """Jobs 0/2 and 1/2 write into their own folders; copying them together and rerunning finalizes."""
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    assert tokenize.main(_args(corpus, a, "--clips-per-shard", "4", "--parts", "0/2")) == 0
    assert tokenize.main(_args(corpus, b, "--clips-per-shard", "4", "--parts", "1/2")) == 0
    assert not (a / "store.json").exists() and not (b / "store.json").exists()
    for sub in ("parts", "audio", "visual"):
        for p in (b / sub).iterdir():
            shutil.copy2(p, a / sub / p.name)
    assert tokenize.main(_args(corpus, a, "--clips-per-shard", "4")) == 0
    assert fx.store_files(a) == fx.store_files(reference)


def test_another_job_in_out_is_refused(corpus, reference, tmp_path, capsys):
    out = tmp_path / "store"
    assert tokenize.main(_args(corpus, out, "--clips-per-shard", "4")) == 0
    assert tokenize.main(_args(corpus, out, "--clips-per-shard", "4", seed=1)) == 2
    err = capsys.readouterr().err
    assert "fingerprints" in err and "--overwrite" in err
    assert tokenize.main(_args(corpus, out, "--clips-per-shard", "4", "--overwrite", seed=1)) == 0
    store = TokenStore.open(out)
    assert store.provenance["audio"]["fingerprint"] == fx.FakeAudioTok.from_pretrained(
        corpus / "audio_tok1").fingerprint()
    not_a_store = tmp_path / "other"
    not_a_store.mkdir()
    (not_a_store / "precious.txt").write_text("x")
    assert tokenize.main(_args(corpus, not_a_store)) == 2
    assert (not_a_store / "precious.txt").exists()


def test_retry_errors(tmp_path):
    fx.make_corpus(tmp_path, n=10, broken=(3,))
    fx.save_tokenizers(tmp_path)
    out = tmp_path / "store"
    assert tokenize.main(_args(tmp_path, out)) == 0
    assert len(TokenStore.open(out)) == 9
    spec = json.loads((tmp_path / "media" / "clip0003.json").read_text())
    spec["broken"] = False
    (tmp_path / "media" / "clip0003.json").write_text(json.dumps(spec))
    assert tokenize.main(_args(tmp_path, out)) == 0
    assert len(TokenStore.open(out)) == 9  # finished work is not redone
    assert tokenize.main(_args(tmp_path, out, "--retry-errors")) == 0
    assert len(TokenStore.open(out)) == 10 and (out / "errors.jsonl").read_text() == ""


def test_audio_only_store(corpus, tmp_path):
    out = tmp_path / "store"
    args = ["--manifest", str(corpus / "manifest.jsonl"), "--audio-tokenizer", str(corpus / "audio_tok0"),
            "--out", str(out), "--loader", fx.LOADER, "--progress", "false", "--limit", "7"]
    assert tokenize.main(args) == 0
    store = TokenStore.open(out)
    assert store.modalities == ["audio"] and len(store) == 6
    assert TokenDataset(store, window_seconds=1.0)[0]["audio"].shape == (50, 4)


def test_real_media_and_tiny_vqvaes(tmp_path, capsys):
    """Real mp4 files through load_aligned_clip, the tiny AudioVQVAE/VisualVQVAE presets, a corrupt file."""
    import support.media as mf

    from vqmae.data.clips import ClipConfig, load_aligned_clip
    from vqmae.data.manifest import ClipRecord, write_manifest
    from vqmae.tokenizers import AudioVQVAE, VisualVQVAE, audio_preset, visual_preset

    records = []
    for i, secs in enumerate((1.0, 2.4, 0.6)):
        path = tmp_path / "media" / f"v{i}.mp4"
        mf.write_clip(path, seconds=secs, size=(64, 48), seed=i)
        records.append(ClipRecord(id=f"v{i}", path=f"media/v{i}.mp4", speaker=f"s{i % 2}", label=i % 2))
    mf.garbage(tmp_path / "media" / "bad.mp4")
    records.append(ClipRecord(id="bad", path="media/bad.mp4", speaker="s0", label=0))
    write_manifest(tmp_path, records, root=tmp_path, name="real", classes=["x", "y"])
    torch.manual_seed(0)
    audio = AudioVQVAE(audio_preset("tiny")).eval()
    visual = VisualVQVAE(visual_preset("tiny")).eval()
    # untrained k-means quantizers initialise on first use: use them once before saving
    audio.tokenize(mf.tone(1.0, 16000))
    visual.tokenize(np.random.default_rng(0).integers(0, 256, (8, 96, 96, 3), dtype=np.uint8))
    audio.save_pretrained(tmp_path / "atok")
    visual.save_pretrained(tmp_path / "vtok")
    out = tmp_path / "store"
    args = ["--manifest", str(tmp_path / "manifest.jsonl"), "--audio-tokenizer", str(tmp_path / "atok"),
            "--visual-tokenizer", str(tmp_path / "vtok"), "--out", str(out), "--detect-faces", "false",
            "--num-workers", "1", "--progress", "false"]
    assert tokenize.main(args) == 0
    assert "3 of 4 clips stored, 1 failed" in capsys.readouterr().out
    store = TokenStore.open(out)
    store.check_tokenizer("visual", visual.fingerprint())
    cfg = ClipConfig(detect_faces=False)
    assert store.meta["clip_config"]["detect_faces"] is False
    for c in store.clips:
        clip = load_aligned_clip(tmp_path / c.path, cfg)
        np.testing.assert_array_equal(store.read(c.id, "audio"), audio.tokenize(clip.audio).numpy())
        np.testing.assert_array_equal(store.read(c.id, "visual"), visual.tokenize(clip.faces).numpy())
        assert c.frames["audio"] == 2 * c.frames["visual"] == 2 * clip.num_frames
    err = json.loads((out / "errors.jsonl").read_text())
    assert err["id"] == "bad" and err["file"].endswith("bad.mp4") and err["kind"] != "ValueError"
    ds = TokenDataset(store, window_seconds=2.0, mode="all")
    # 1 s (looped), 2.4 s (2 windows: 0-2 s and 0.4-2.4 s), 0.6 s (looped)
    assert [int(ds[j]["valid"]) for j in range(len(ds))] == [25, 50, 50, 15]
    assert ds.item_start.tolist() == [0, 0, 10, 0]
    assert ds[0]["audio"].shape == (100, 24) and ds[0]["visual"].shape == (50, 4, 4)


def test_tokenizer_that_changes_while_encoding_is_refused(tmp_path, capsys, monkeypatch):
    import torch

    from vqmae.tokenizers import VisualVQVAE, visual_preset

    fx.make_corpus(tmp_path, n=3)
    VisualVQVAE(visual_preset("tiny")).save_pretrained(tmp_path / "vtok")
    encode = VisualVQVAE.encode

    def drifting_encode(self, x):  # a tokenizer whose weights move while it encodes
        with torch.no_grad():
            next(self.parameters()).add_(1e-3)
        return encode(self, x)

    monkeypatch.setattr(VisualVQVAE, "encode", drifting_encode)
    args = ["--manifest", str(tmp_path / "manifest.jsonl"), "--visual-tokenizer", str(tmp_path / "vtok"),
            "--out", str(tmp_path / "store"), "--loader", fx.LOADER, "--progress", "false"]
    assert tokenize.main(args) == 2
    assert "changed its weights while encoding" in capsys.readouterr().err
    assert not list((tmp_path / "store" / "parts").glob("*.json"))


def test_thread_counts_come_from_the_settings_and_are_recorded(corpus, tmp_path, monkeypatch):
    """Thread counts are fixed by settings (never by the machine's load) and saved with the run."""
    from vqmae.data import tokenize_job

    assert not hasattr(tokenize_job, "_give_cores_back_if_workers_busy")
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    out = tmp_path / "store"
    assert tokenize.main(_args(corpus, out, "--limit", "4", "threads=1", "num_workers=0")) == 0
    assert seen == [1]  # set once, from the setting; never changed while encoding
    run = json.loads((out / "tokenize_config.json").read_text())
    assert run["threads"] == 1 and run["num_workers"] == 0
    auto = tmp_path / "auto"
    assert tokenize.main(_args(corpus, auto, "--limit", "4")) == 0
    run = json.loads((auto / "tokenize_config.json").read_text())
    assert run["threads"] >= 1 and run["num_workers"] >= 1  # the resolved values, not 0 / -1


def _bad_media(folder: Path) -> dict[str, Path]:
    """A good clip and one of each kind that prepare rejects: truncated, silent, too short (0.3 s)."""
    import support.media as mf

    d = folder / "media"
    out = {"good": mf.write_clip(d / "good.mp4", seconds=1.0, size=(64, 48), seed=1, sample_rate=16000)}
    out["truncated"] = mf.truncate(mf.write_clip(d / "truncated.mp4", seconds=2.0, size=(64, 48),
                                                 sample_rate=16000, faststart=True), 0.5)
    out["silent"] = mf.write_media(d / "silent.mp4", frames=mf.plain_frames(25, 64, 48),
                                   wave=np.zeros(16000, np.float32), sample_rate=16000)
    out["too_short"] = mf.write_clip(d / "too_short.mp4", seconds=0.3, size=(64, 48), sample_rate=16000)
    return out


def test_truncated_silent_and_short_clips_are_logged_with_prepares_kinds(tmp_path, capsys):
    import dataclasses

    from vqmae.data.manifest import ClipRecord, write_manifest
    from vqmae.tokenizers import AudioVQVAE, VisualVQVAE, audio_preset, visual_preset

    files = _bad_media(tmp_path)
    records = [ClipRecord(id=k, path=f"media/{p.name}", speaker=f"s{i % 2}", label=0)
               for i, (k, p) in enumerate(files.items())]
    write_manifest(tmp_path, records, root=tmp_path, name="bad", classes=["x"])
    a, v = audio_preset("tiny"), visual_preset("tiny")
    a.quantizer = dataclasses.replace(a.quantizer, kmeans_init=False)
    v.quantizer = dataclasses.replace(v.quantizer, kmeans_init=False)
    AudioVQVAE(a).save_pretrained(tmp_path / "atok")
    VisualVQVAE(v).save_pretrained(tmp_path / "vtok")
    for mods in (["--audio-tokenizer", str(tmp_path / "atok"), "--visual-tokenizer", str(tmp_path / "vtok")],
                 ["--audio-tokenizer", str(tmp_path / "atok")]):  # the audio-only path checks too
        out = tmp_path / f"store{len(mods)}"
        args = ["--manifest", str(tmp_path / "manifest.jsonl"), *mods, "--out", str(out),
                "--detect-faces", "false", "--num-workers", "0", "--progress", "false"]
        assert tokenize.main(args) == 0  # logged, and the job goes on
        assert "1 of 4 clips stored, 3 failed" in capsys.readouterr().out
        kinds = {e["id"]: e["kind"] for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())}
        assert kinds == {"truncated": "truncated", "silent": "silent", "too_short": "too_short"}
        assert TokenStore.open(out).ids == ["good"]


@pytest.mark.parametrize("bad, key", [
    (["--limit", "-1"], "limit"),                    # stored 11 of 12 clips
    (["--clips-per-shard", "-5"], "clips_per_shard"),  # an empty store that verify called OK
    (["--num-workers", "-2"], "num_workers"),
    (["--threads", "-1"], "threads"),
    (["--face-size", "0"], "face_size"),
    (["--device", "tpu"], "device"),
])
def test_bad_numbers_exit_2_naming_the_setting(corpus, tmp_path, capsys, bad, key):
    assert tokenize.main(_args(corpus, tmp_path / "store", *bad)) == 2
    err = capsys.readouterr().err
    assert f"{key}:" in err and "Traceback" not in err
    assert not (tmp_path / "store").exists()


def test_out_naming_a_file_exits_2(corpus, tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    assert tokenize.main(_args(corpus, f)) == 2
    assert "out: " in capsys.readouterr().err and f.read_text() == "x"


def test_swapped_tokenizer_folders_exit_2_naming_both(corpus, tmp_path, capsys):
    a, v = corpus / "audio_tok0", corpus / "visual_tok0"
    args = ["--manifest", str(corpus / "manifest.jsonl"), "--audio-tokenizer", str(v), "--visual-tokenizer", str(a),
            "--out", str(tmp_path / "store"), "--loader", fx.LOADER, "--progress", "false"]
    assert tokenize.main(args) == 2
    err = capsys.readouterr().err
    assert str(a) in err and str(v) in err and "swapped" in err and "Traceback" not in err
