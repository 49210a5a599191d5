"""Masking functions: counts per ratio, inverse permutations, seeded determinism (1 = masked)."""

import math

import pytest
import torch

from vqmae.mae.masking import (
    MaskingConfig,
    dirichlet_ratios,
    make_masks,
    num_to_keep,
    random_mask,
    structured_mask,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75, 0.9, 1.0])
def test_random_mask_counts_per_ratio(ratio):
    m = random_mask(4, 360, ratio, gen())
    masked = round(360 * ratio)
    assert m.num_masked == masked and m.num_keep == 360 - masked
    assert m.mask.shape == (4, 360) and m.mask.dtype == torch.bool
    assert (m.mask.sum(1) == masked).all()  # 1 = masked


def test_ids_are_consistent_and_restore_is_the_inverse_permutation():
    m = random_mask(8, 160, 0.6, gen(3))
    shuffle = torch.cat([m.ids_keep, m.ids_masked], 1)
    assert (torch.sort(shuffle, 1).values == torch.arange(160)).all()  # a permutation per sample
    assert (torch.gather(shuffle, 1, m.ids_restore) == torch.arange(160)).all()
    assert (torch.gather(m.ids_restore, 1, shuffle) == torch.arange(160)).all()
    mask = m.mask
    assert not torch.gather(mask, 1, m.ids_keep).any()
    assert torch.gather(mask, 1, m.ids_masked).all()
    # a different subset per sample
    assert len({tuple(sorted(r.tolist())) for r in m.ids_keep}) > 1


def test_seeded_determinism():
    a = random_mask(4, 100, 0.5, gen(7))
    b = random_mask(4, 100, 0.5, gen(7))
    c = random_mask(4, 100, 0.5, gen(8))
    assert torch.equal(a.ids_restore, b.ids_restore)
    assert not torch.equal(a.ids_restore, c.ids_restore)
    cfg = MaskingConfig()
    grids = {"audio": (10, 16), "visual": (10, 6, 6)}
    x, y = make_masks(grids, 3, cfg, gen(1)), make_masks(grids, 3, cfg, gen(1))
    for k in grids:
        assert torch.equal(x[k].ids_keep, y[k].ids_keep)


def test_tube_mask_masks_the_same_positions_at_every_time_step():
    grid = (10, 6, 6)
    m = structured_mask(2, grid, 0.5, "tube", gen())
    mask = m.mask.reshape(2, 10, 36)
    assert (mask == mask[:, :1]).all()                  # same over time
    assert (mask[:, 0].sum(1) == 18).all() and m.num_masked == 180
    assert not torch.equal(mask[0, 0], mask[1, 0])


def test_frame_mask_masks_whole_time_steps():
    m = structured_mask(3, (10, 16), 0.3, "frame", gen())
    mask = m.mask.reshape(3, 10, 16)
    assert (mask == mask[:, :, :1]).all()               # whole frames
    assert (mask[:, :, 0].sum(1) == 3).all() and m.num_masked == 48


def test_min_keep_and_min_masked_clamp():
    assert num_to_keep(360, 1.0, min_keep=1) == 1
    assert num_to_keep(360, 0.0, min_masked=1) == 359
    m = structured_mask(2, (10, 16), 0.0, "frame", gen(), min_keep=1, min_masked=1)
    assert m.num_masked == 16


def test_dirichlet_ratios_are_coupled_and_uniform():
    g = gen(0)
    draws = [dirichlet_ratios((1.0, 1.0), g) for _ in range(400)]
    assert all(math.isclose(a + b, 1.0) for a, b in draws)
    v = torch.tensor([d[0] for d in draws])
    assert 0.4 < v.mean() < 0.6 and v.min() < 0.1 and v.max() > 0.9   # Dir(1,1): r_v ~ U(0, 1)
    r = MaskingConfig().ratios(("audio", "visual"), gen(2))
    assert math.isclose(r["audio"] + r["visual"], 1.0)
    fixed = MaskingConfig(ratio_mode="fixed", audio_ratio=0.3, visual_ratio=0.8).ratios(("audio", "visual"), gen())
    assert fixed == {"audio": 0.3, "visual": 0.8}
    assert MaskingConfig(audio_ratio=0.7).ratios(("audio",), gen()) == {"audio": 0.7}  # unimodal: fixed
