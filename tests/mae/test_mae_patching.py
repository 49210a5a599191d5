"""Patching and unpatching of token grids (and raw inputs) are exact inverses."""

import pytest
import torch

from vqmae.mae.patching import patch_grid, patchify, unpatchify


@pytest.mark.parametrize("shape,patch", [
    ((2, 50, 24, 24), (5, 4, 4)),        # paper visual: 360 tubes × 80
    ((2, 100, 64), (10, 4)),             # paper audio: 160 patches × 40
    ((3, 10, 6, 6), (2, 3, 2)),
    ((1, 10, 32, 32, 3), (5, 16, 16, 3)),  # raw pixels with a channel axis
])
def test_patchify_unpatchify_are_exact_inverses(shape, patch):
    x = torch.randint(0, 1000, shape)
    p = patchify(x, patch)
    grid = patch_grid(shape[1:], patch)
    assert p.shape == (shape[0], torch.tensor(grid).prod().item(), torch.tensor(patch).prod().item())
    assert torch.equal(unpatchify(p, patch, grid), x)


def test_patch_contents_follow_time_then_space_order():
    x = torch.arange(50 * 24 * 24).reshape(1, 50, 24, 24)
    p = patchify(x, (5, 4, 4))
    assert p.shape == (1, 360, 80)
    # first tube = frames 0..4, rows 0..3, cols 0..3; second tube = cols 4..7
    assert torch.equal(p[0, 0], x[0, :5, :4, :4].reshape(-1))
    assert torch.equal(p[0, 1], x[0, :5, :4, 4:8].reshape(-1))
    assert torch.equal(p[0, 36], x[0, 5:10, :4, :4].reshape(-1))


def test_patch_that_does_not_divide_is_an_error():
    with pytest.raises(ValueError, match="does not divide"):
        patchify(torch.zeros(1, 50, 24, 24), (5, 5, 4))
