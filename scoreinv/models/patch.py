"""Patch priors: position channels, and the tiling that assembles a whole-image score from patches.

A patch prior (Hu et al., NeurIPS 2024, "Learning Image Priors through Patch-based Diffusion
Models for Solving Inverse Problems") scores P×P patches p of an N×N image given their position,

    s_θ(p, pos, t) ≈ ∇_p log p_t(p | pos),     p: (B, C, P, P), pos: (B, 2, P, P),

and the score of the whole image x (B, C, N, N) is assembled from the patches of one tiling:

* the tiling's grid lines along each axis sit at −k + i·P (i = 0, 1, …) for an offset
  k ∈ [0, P); a tile that would reach outside the image is moved inside it (its start clipped
  to [0, N − P]), so every patch the network sees lies inside the image and no padding value
  has to be invented;
* all patches are scored in one batch and each pastes back only the part of the grid tile it
  stands for: every pixel takes its score from the patch of the grid tile that holds it, and
  the extra pixels a moved border tile sees are context only;
* the offset (k, l) changes from one noise level to the next, so over the sampler's steps no
  seam stays in one place. It is a fixed function of t (a hash of its float32 bits), so the
  score is a deterministic function of (x, t): a reconstruction is reproducible, and an item's
  result does not depend on what else is in its batch.

Positions: pixel (i, j) of an N×N image has the coordinates u = (j + ½)/N·2 − 1 (columns) and
v = (i + ½)/N·2 − 1 (rows), both in (−1, 1); their step 2/N per pixel tells the network N.
"""

from __future__ import annotations

import torch

# Multiplier of a 32-bit integer hash (Knuth's multiplicative hashing, the golden ratio · 2³²).
_HASH_MULTIPLIER = 2654435761


def position_channels(rows: torch.Tensor, cols: torch.Tensor, image_size: int) -> torch.Tensor:
    """The (u, v) channels of patches with the given pixel rows and columns of an N×N image.

    Parameters
    ----------
    rows, cols:
        (B, P) integer (or float) pixel indices of each patch's rows and columns.
    image_size:
        N, the whole image's height = width in pixels (a float tensor (B,) also works, one N
        per patch).

    Returns
    -------
    torch.Tensor
        (B, 2, P, P) float32: channel 0 is u (varies along columns), channel 1 is v (rows).
    """
    size = torch.as_tensor(image_size, dtype=torch.float32, device=rows.device).reshape(-1, 1)
    u = (cols.float() + 0.5) / size * 2 - 1  # (B, P)
    v = (rows.float() + 0.5) / size * 2 - 1
    patch = rows.shape[-1]
    return torch.stack([u[:, None, :].expand(-1, patch, -1), v[:, :, None].expand(-1, -1, patch)], dim=1)


def tile_starts(image_size: int, patch_size: int, offset: int) -> list[tuple[int, int, int]]:
    """The tiles along one axis for the grid offset k = ``offset``: (start, own_low, own_high) each.

    Grid tile i covers [−k + i·P, −k + (i + 1)·P) ∩ [0, N): its pixels ``own_low:own_high`` take
    their score from this tile. The patch cut for it starts at ``start``, the grid start clipped
    to [0, N − P], so that it lies inside the image.
    """
    if not 0 <= offset < patch_size:
        raise ValueError(f"offset must be in [0, {patch_size}), got {offset}")
    if image_size < patch_size:
        raise ValueError(f"the image ({image_size} pixels) is smaller than the patch ({patch_size} pixels)")
    tiles = []
    grid = -offset
    while grid < image_size:
        own_low, own_high = max(grid, 0), min(grid + patch_size, image_size)
        if own_high > own_low:
            tiles.append((min(max(grid, 0), image_size - patch_size), own_low, own_high))
        grid += patch_size
    return tiles


def tiling_offsets(t: torch.Tensor, patch_size: int) -> list[tuple[int, int]]:
    """The tiling offset (k, l) ∈ [0, P)² for each time in ``t`` (B,): a hash of t's float32 bits."""
    bits = t.detach().to("cpu", torch.float32).contiguous().view(torch.int32).tolist()
    offsets = []
    for value in bits:
        mixed = ((value & 0xFFFFFFFF) * _HASH_MULTIPLIER) & 0xFFFFFFFF
        mixed ^= mixed >> 15
        mixed = (mixed * _HASH_MULTIPLIER) & 0xFFFFFFFF
        offsets.append(((mixed >> 8) % patch_size, (mixed >> 20) % patch_size))
    return offsets


def cut_patches(x: torch.Tensor, row_starts: list[int], col_starts: list[int], patch_size: int) -> torch.Tensor:
    """The patches of a tiling, (B·R·Q, C, P, P), ordered by item, then row tile, then column tile."""
    batch, channels = x.shape[:2]
    offsets = torch.arange(patch_size, device=x.device)
    rows = torch.tensor(row_starts, device=x.device)[:, None] + offsets  # (R, P)
    cols = torch.tensor(col_starts, device=x.device)[:, None] + offsets  # (Q, P)
    patches = x[:, :, rows[:, None, :, None], cols[None, :, None, :]]  # (B, C, R, Q, P, P)
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels, patch_size, patch_size)


def tiling_positions(row_starts: list[int], col_starts: list[int], patch_size: int, image_size: int,
                     device: torch.device) -> torch.Tensor:
    """Position channels of one item's tiles, (R·Q, 2, P, P), in :func:`cut_patches`' order."""
    offsets = torch.arange(patch_size, device=device)
    rows = torch.tensor(row_starts, device=device)[:, None] + offsets
    cols = torch.tensor(col_starts, device=device)[:, None] + offsets
    count_r, count_c = len(row_starts), len(col_starts)
    rows = rows[:, None, :].expand(count_r, count_c, patch_size).reshape(-1, patch_size)
    cols = cols[None, :, :].expand(count_r, count_c, patch_size).reshape(-1, patch_size)
    return position_channels(rows, cols, image_size)


def distinct_starts(tiles: list[tuple[int, int, int]]) -> list[int]:
    """The distinct patch starts of :func:`tile_starts`' tiles, in order (two border tiles may
    share one patch when N is close to a multiple of P)."""
    return sorted({tile[0] for tile in tiles})


def paste_patches(patches: torch.Tensor, like: torch.Tensor, row_tiles: list[tuple[int, int, int]],
                  col_tiles: list[tuple[int, int, int]]) -> torch.Tensor:
    """Paste the patches cut at the distinct starts, (B·R·Q, C, P, P) in :func:`cut_patches`'
    order, into a tensor shaped like ``like``: each grid tile takes its own pixels from its patch."""
    batch, channels = like.shape[:2]
    patch_size = patches.shape[-1]
    row_starts, col_starts = distinct_starts(row_tiles), distinct_starts(col_tiles)
    grid = patches.reshape(batch, len(row_starts), len(col_starts), channels, patch_size, patch_size)
    out = torch.empty_like(like)
    for top, row_low, row_high in row_tiles:
        for left, col_low, col_high in col_tiles:
            patch = grid[:, row_starts.index(top), col_starts.index(left)]
            out[:, :, row_low:row_high, col_low:col_high] = patch[:, :, row_low - top:row_high - top,
                                                                  col_low - left:col_high - left]
    return out
