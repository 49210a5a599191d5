"""`vqmae reconstruct`: mask a real media clip, predict, decode with the tokenizers, plot, WAV."""

import json

import pytest
import soundfile as sf
import torch
from support.media import write_clip

from vqmae.data.token_writer import tokenizer_provenance
from vqmae.mae import VQMAEAV, cfg_for_store
from vqmae.pipelines import reconstruct
from vqmae.tokenizers import AudioVQVAE, VisualVQVAE, audio_preset, visual_preset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    torch.manual_seed(0)
    toks = {"audio": AudioVQVAE(audio_preset("tiny")), "visual": VisualVQVAE(visual_preset("tiny"))}
    prov = {}
    for m, tok in toks.items():
        tok.eval().save_pretrained(root / f"tok_{m}")
        prov[m] = tokenizer_provenance(tok, root / f"tok_{m}")
    cfg = cfg_for_store(prov, preset="tiny", window_seconds=0.4)
    VQMAEAV(cfg).save_pretrained(root / "mae", metadata={"token_store": {"path": "", "provenance": prov}})
    clip = write_clip(root / "clip.mp4", seconds=1.0, size=(48, 48))
    return root, clip


def test_reconstruct_writes_png_wav_and_sweep(setup):
    root, clip = setup
    out = root / "out"
    code = reconstruct.main(["--model", str(root / "mae"), "--clip", str(clip), "--mask-ratio", "0.5",
                             "--out", str(out), "detect_faces=false", "sweep=[0,0.5,0.9]", "griffin_lim_iters=2"])
    assert code == 0
    res = json.loads((out / "reconstruction.json").read_text())
    assert set(res["masked_token_accuracy"]) == {"audio", "visual"}
    assert {"psnr_db", "lsd_db", "tokenizer_only_psnr_db"} <= set(res)
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["ratio"] for r in sweep] == [0.0, 0.5, 0.9]
    # nothing masked: the reconstruction is the tokenizer's own
    assert sweep[0]["psnr_db"] == pytest.approx(res["tokenizer_only_psnr_db"])
    for name in ("reconstruction.png", "sweep.png"):
        assert (out / name).stat().st_size > 5000
    for name in ("original", "tokenizer", "reconstructed"):
        wave, sr = sf.read(out / f"audio_{name}.wav")
        assert sr == 16000 and wave.shape == (0.4 * 16000,)


def test_reconstruct_refuses_another_tokenizer(setup, tmp_path, capsys):
    root, clip = setup
    other = AudioVQVAE(audio_preset("tiny"))
    other.save_pretrained(tmp_path / "other")
    code = reconstruct.main(["--model", str(root / "mae"), "--clip", str(clip), "--audio-tokenizer",
                             str(tmp_path / "other"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "not the one the model was pretrained" in capsys.readouterr().err


def test_masks_map_to_pixels_and_bins():
    tm = torch.zeros(2, 4, 4, dtype=torch.bool)
    tm[0, 1, 2] = True
    pm = reconstruct.pixel_mask(tm, 16)
    assert pm.shape == (2, 16, 16) and pm[0, 4:8, 8:12].all() and pm.sum() == 16
    am = torch.zeros(3, 8, dtype=torch.bool)
    am[1, 7] = True
    bm = reconstruct.bin_mask(am, 65)
    assert bm.shape == (3, 65) and bm[1, -1] and not bm[1, 0] and bm.sum() == 8


@pytest.mark.parametrize("bad, key", [
    (["--mask-ratio", "1.5"], "mask_ratio"),
    (["audio_ratio=-0.5"], "audio_ratio"),
    (["frames=0"], "frames"),
    (["sweep=[0.5,2]"], "sweep"),
])
def test_reconstruct_bad_settings_exit_2(setup, tmp_path, capsys, bad, key):
    root, clip = setup
    assert reconstruct.main(["--model", str(root / "mae"), "--clip", str(clip), "--out", str(tmp_path / "o"), *bad]) == 2
    err = capsys.readouterr().err
    assert f"{key}:" in err and "Traceback" not in err


def test_reconstruct_out_file_swapped_tokenizers_and_short_clip_exit_2(setup, tmp_path, capsys):
    root, clip = setup
    base = ["--model", str(root / "mae"), "--clip", str(clip), "detect_faces=false"]
    f = tmp_path / "file"
    f.write_text("x")
    assert reconstruct.main([*base, "--out", str(f)]) == 2
    assert "out: " in capsys.readouterr().err
    a, v = root / "tok_audio", root / "tok_visual"
    assert reconstruct.main([*base, "--audio-tokenizer", str(v), "--visual-tokenizer", str(a),
                             "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(a) in err and str(v) in err and "swapped" in err
    short = write_clip(tmp_path / "short.mp4", seconds=0.3, size=(48, 48))
    assert reconstruct.main(["--model", str(root / "mae"), "--clip", str(short), "detect_faces=false",
                             "--out", str(tmp_path / "o2")]) == 2
    assert "too_short" in capsys.readouterr().err
