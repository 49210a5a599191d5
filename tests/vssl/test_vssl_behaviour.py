"""What the talking-face generator learns: measured on the tiny synthetic corpus after brief
training (multitask, ~450 steps of 8 windows × 8 frames at 32 px on one CPU thread).

Each check is a ratio of mean absolute pixel differences ([-1, 1] scale) inside the mouth region
(rows >= 0.6 H, columns 0.2..0.8 W) and outside it, with thresholds an untrained or
audio-blind generator fails (the untrained model is measured too).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqmae.vssl import VSSLModel, mouth_mask, to_model_images, vssl_loss, vssl_model_preset
from vqmae.vssl.data import ClipWindows, collate

pytestmark = pytest.mark.slow

STEPS = 450
CLIPS = (0, 2, 4, 6)  # four speakers


def _train(clips) -> tuple[VSSLModel, VSSLModel]:
    torch.manual_seed(0)
    model = VSSLModel(vssl_model_preset("tiny", task="multitask"))
    model.fit_normalization([torch.from_numpy(c.audio) for c in clips])
    untrained = VSSLModel(model.config)
    untrained.load_state_dict(model.state_dict())
    ds = ClipWindows(clips, window=8, items_per_clip=4, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    step, epoch = 0, 0
    while step < STEPS:
        ds.set_epoch(epoch)
        order = torch.randperm(len(ds), generator=g).tolist()
        for i in range(0, len(order) - 7, 8):
            loss, _ = vssl_loss(model, collate([ds[j] for j in order[i:i + 8]]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == STEPS:
                break
        epoch += 1
    return model.eval(), untrained.eval()


@pytest.fixture(scope="module")
def trained(tiny_clips):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clips, loud = tiny_clips
        model, untrained = _train(clips)
        return model, untrained, clips, loud
    finally:
        torch.set_num_threads(n)


@torch.no_grad()
def _generate(model, audio: np.ndarray, still: np.ndarray) -> torch.Tensor:
    """(T, 3, H, W) generated frames for the whole clip audio and one still."""
    return model.generate(torch.from_numpy(np.asarray(audio))[None],
                          to_model_images(torch.from_numpy(np.asarray(still)))[None])[0]


def _regions(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    m = mouth_mask(size, 0.6, 0.2).bool()
    return m, ~m


def _loud_vs_silent(frames: torch.Tensor, loud: np.ndarray) -> tuple[float, float]:
    """Mouth / rest difference between the mean frame of loud steps and of silent steps."""
    loud = torch.from_numpy(loud[: frames.shape[0]])
    hi, lo = loud > 0.6, loud < 0.05
    d = (frames[hi].mean(0) - frames[lo].mean(0)).abs()
    mouth, rest = _regions(frames.shape[-1])
    return float(d[:, mouth].mean()), float(d[:, rest].mean())


def _loud_silent_stats(model, clips, loud):
    gm = gr = rm = 0.0
    for i in CLIPS:
        c = clips[i]
        gen = _generate(model, c.audio, c.faces[0])
        m, r = _loud_vs_silent(gen, loud[i])
        real_m, _ = _loud_vs_silent(to_model_images(torch.from_numpy(np.asarray(c.faces))), loud[i])
        gm, gr, rm = gm + m, gr + r, rm + real_m
    return gm / len(CLIPS), gr / len(CLIPS), rm / len(CLIPS)


def test_mouth_differs_between_loud_and_silent_steps(trained):
    model, untrained, clips, loud = trained
    gen_mouth, gen_rest, real_mouth = _loud_silent_stats(model, clips, loud)
    print(f"loud-vs-silent: mouth {gen_mouth:.4f}, rest {gen_rest:.4f}, real mouth {real_mouth:.4f}")
    assert gen_mouth > 1.5 * gen_rest
    assert gen_mouth > 0.25 * real_mouth
    u_mouth, u_rest, _ = _loud_silent_stats(untrained, clips, loud)
    assert not (u_mouth > 1.5 * u_rest and u_mouth > 0.25 * real_mouth)  # the check can fail


def test_swapping_the_audio_changes_the_mouth(trained):
    model, _, clips, _ = trained
    mouth, rest = _regions()
    dm = dr = 0.0
    for i in CLIPS:
        a, b = clips[i], clips[i + 1]  # same speaker, other sentence
        t = min(a.num_frames, b.num_frames) * 640
        g_a = _generate(model, a.audio[:t], a.faces[0])
        g_b = _generate(model, b.audio[:t], a.faces[0])
        d = (g_a - g_b).abs().mean(0)
        dm, dr = dm + float(d[:, mouth].mean()), dr + float(d[:, rest].mean())
    print(f"audio swap: mouth {dm / len(CLIPS):.4f}, rest {dr / len(CLIPS):.4f}")
    assert dm > 1.5 * dr


def test_swapping_the_still_changes_identity_only(trained):
    model, _, clips, loud = trained
    mouth, rest = _regions()
    own = other = 0.0
    for i, j in zip(CLIPS, CLIPS[1:] + CLIPS[:1]):  # audio of speaker i, still of speaker j
        x, y = clips[i], clips[j]
        gen = _generate(model, x.audio, y.faces[0])
        real_x = to_model_images(torch.from_numpy(np.asarray(x.faces)))[: gen.shape[0]]
        still_y = to_model_images(torch.from_numpy(np.asarray(y.faces[0])))
        own += float((gen - still_y).abs()[:, :, rest].mean())
        other += float((gen - real_x).abs()[:, :, rest].mean())
        m, r = _loud_vs_silent(gen, loud[i])  # the mouth still follows speaker i's audio
        assert m > 1.2 * r, (i, j, m, r)
    print(f"still swap: rest vs new still {own / len(CLIPS):.4f}, vs audio's speaker {other / len(CLIPS):.4f}")
    assert own < 0.5 * other
