"""Cut discrete token grids into patches (and back), with einops.

Visual tokens ``(B, T, H, W)`` become tubes ``(B, N, pt·ph·pw)`` with
``N = (T/pt)·(H/ph)·(W/pw)``, patch order time-major (t, h, w) and index order inside a
tube (pt, ph, pw). Audio tokens ``(B, T, F)`` become patches ``(B, (T/pt)·(F/pf), pt·pf)``.
The same code serves any number of token axes (raw inputs use it with a channel axis too).
"""

from __future__ import annotations

from functools import cache

import torch
from einops import rearrange

_GRID = "tuvw"
_PATCH = "abcd"


@cache
def _patterns(ndim: int) -> tuple[str, str]:
    """einops patterns for ``ndim`` axes after the batch axis (time + token axes)."""
    if ndim > len(_GRID):
        raise ValueError(f"at most {len(_GRID)} token axes are supported, got {ndim}")
    g, p = _GRID[:ndim], _PATCH[:ndim]
    grid = " ".join(f"({gi} {pi})" for gi, pi in zip(g, p))
    flat = f"({' '.join(g)}) ({' '.join(p)})"
    return f"B {grid}", f"B {flat}"


def patchify(tokens: torch.Tensor, patch: tuple[int, ...]) -> torch.Tensor:
    """``(B, T, *S)`` -> ``(B, N, prod(patch))``; ``patch = (pt, *ps)`` must divide ``(T, *S)``.

    Extra trailing axes (e.g. pixel channels) are allowed: ``(B, T, *S, C)`` with
    ``patch = (pt, *ps, C)``.
    """
    grid_pat, flat_pat = _patterns(tokens.ndim - 1)
    sizes = {p: s for p, s in zip(_PATCH, patch)}
    for axis, (n, p) in enumerate(zip(tokens.shape[1:], patch)):
        if n % p:
            raise ValueError(f"patch {tuple(patch)} does not divide the token grid {tuple(tokens.shape[1:])} "
                             f"(axis {axis}: {p} ∤ {n})")
    return rearrange(tokens, f"{grid_pat} -> {flat_pat}", **sizes)


def unpatchify(patches: torch.Tensor, patch: tuple[int, ...], grid: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, N, prod(patch))`` -> ``(B, T, *S)`` where
    ``grid = (T/pt, *S/ps)`` is the patch grid."""
    grid_pat, flat_pat = _patterns(len(patch))
    sizes = {p: s for p, s in zip(_PATCH, patch)}
    sizes.update({g: s for g, s in zip(_GRID, grid)})
    return rearrange(patches, f"{flat_pat} -> {grid_pat}", **sizes)


def patch_grid(shape: tuple[int, ...], patch: tuple[int, ...]) -> tuple[int, ...]:
    """Patch grid of a token window of ``shape = (T, *S)``."""
    return tuple(n // p for n, p in zip(shape, patch))
