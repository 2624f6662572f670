"""A small medical colour data set: random crops of two photographs scikit-image ships.

Both load offline (no download):

* ``"histology"``: ``skimage.data.immunohistochemistry()``, a 512×512 RGB micrograph of
  immunohistochemically stained colon tissue (brown DAB stain, blue haematoxylin nuclei);
* ``"retina"``: ``skimage.data.retina()``, a 1411×1411 RGB fundus photograph (optic disc,
  vessels, macula) on a black background. It is resized to 512×512 (antialiased, rounded
  back to 8 bits) first, so a crop covers the same fraction of either photograph.

Crops whose fraction of black background pixels (every channel below 0.08) exceeds
``max_background`` are rejected and redrawn, so no crop is mostly the black surround of the
fundus. (A threshold on the crop's mean would also reject the dark but genuine macula.)

Pixels are the photographs' 8-bit values divided by 255; with ``scale=(1, 1)`` (no
resampling) they stay on the 256 levels k/255.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

COLOUR_SOURCES = ("histology", "retina")
SOURCE_SIDE = 512
BACKGROUND_LEVEL = 0.08


@functools.lru_cache(maxsize=None)
def _source(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The photograph ``(3, 512, 512)`` in [0, 1] and the integral image of its background mask."""
    from skimage import data

    loaders = {"histology": data.immunohistochemistry, "retina": data.retina}
    array = loaders[name]()
    image = torch.from_numpy(array).permute(2, 0, 1).float().div(255)
    if image.shape[-2:] != (SOURCE_SIDE, SOURCE_SIDE):
        image = F.interpolate(image[None], size=(SOURCE_SIDE, SOURCE_SIDE), mode="bilinear",
                              antialias=True, align_corners=False)[0]
        image = torch.round(image.clamp(0, 1) * 255) / 255  # back on the 8-bit levels
    background = (image.amax(dim=0) < BACKGROUND_LEVEL).double()
    integral = F.pad(background.cumsum(0).cumsum(1), (1, 0, 1, 0))
    return image.contiguous(), integral


def source_image(name: str) -> torch.Tensor:
    """The photograph behind a source, ``(3, 512, 512)`` float32 in [0, 1] (a copy)."""
    _check_sources((name,))
    return _source(name)[0].clone()


def _check_sources(sources) -> tuple[str, ...]:
    if isinstance(sources, str):
        sources = (sources,)
    sources = tuple(sources)
    if not sources:
        raise ValueError(f"choose at least one colour source of {list(COLOUR_SOURCES)}")
    unknown = [name for name in sources if name not in COLOUR_SOURCES]
    if unknown:
        raise ValueError(f"unknown colour source(s) {unknown}; choose from {list(COLOUR_SOURCES)}")
    if len(set(sources)) != len(sources):
        raise ValueError(f"colour sources must not repeat, got {list(sources)}")
    return sources


def _positions(name: str, count: int, size: int, scale: tuple[float, float], max_background: float,
               generator: torch.Generator) -> torch.Tensor:
    """``count`` accepted crop windows ``(top, left, side)`` in the source, as a (count, 3) tensor."""
    integral = _source(name)[1]
    side_max = integral.shape[0] - 1
    accepted: list[torch.Tensor] = []
    found = 0
    for _ in range(1000):
        if found >= count:
            break
        batch = max(2 * (count - found), 16)
        zoom = scale[0] + (scale[1] - scale[0]) * torch.rand(batch, generator=generator, dtype=torch.float64)
        side = (size * zoom).round().long().clamp(1, side_max)
        top = (torch.rand(batch, generator=generator, dtype=torch.float64) * (side_max - side + 1)).long()
        left = (torch.rand(batch, generator=generator, dtype=torch.float64) * (side_max - side + 1)).long()
        dark = (integral[top + side, left + side] - integral[top, left + side]
                - integral[top + side, left] + integral[top, left])
        keep = dark / side.double() ** 2 <= max_background
        windows = torch.stack([top, left, side], dim=1)[keep][: count - found]
        accepted.append(windows)
        found += len(windows)
    if found < count:
        raise ValueError(f"found only {found} of {count} {name} crops with at most "
                         f"{max_background:.0%} background; raise max_background")
    return torch.cat(accepted) if accepted else torch.zeros(0, 3, dtype=torch.long)


def colour_crops(
    n: int,
    size: int,
    seed: int = 0,
    sources: tuple[str, ...] | list[str] = COLOUR_SOURCES,
    *,
    scale: tuple[float, float] = (1.0, 1.0),
    augment: bool = True,
    max_background: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` random colour crops, ``(n, 3, size, size)`` float32 in [0, 1], seeded.

    Item ``i`` comes from ``sources[i % len(sources)]`` (so every source is used once
    ``n >= len(sources)``). Each crop is a square window of ``round(size · s)`` source pixels,
    s ~ U(``scale``), resized to ``size`` (antialiased) when it differs, at a uniformly random
    position; windows with more than ``max_background`` black background are redrawn. With
    ``augment`` each crop is then flipped and rotated by a random element of the 8 symmetries
    of the square (flips and 90° rotations). Every draw comes from one ``torch.Generator``
    seeded with ``seed`` (or ``generator``, a CPU generator, when given: ``seed`` is then
    unused): the same arguments give the same crops on every machine.
    """
    n, size = int(n), int(size)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    sources = _check_sources(sources)
    low, high = (float(s) for s in scale)
    if not 0 < low <= high:
        raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
    if round(size * high) > SOURCE_SIDE:
        raise ValueError(f"crops of up to {round(size * high)} pixels (size {size} × scale {high:g}) "
                         f"do not fit the {SOURCE_SIDE}×{SOURCE_SIDE} source photographs")
    if not 0 <= max_background <= 1:
        raise ValueError(f"max_background must lie in [0, 1], got {max_background}")

    if generator is None:
        generator = torch.Generator().manual_seed(int(seed))
    crops = torch.empty(n, 3, size, size)
    for offset, name in enumerate(sources):
        items = range(offset, n, len(sources))
        image = _source(name)[0]
        windows = _positions(name, len(items), size, (low, high), max_background, generator)
        for index, (top, left, side) in zip(items, windows.tolist()):
            crop = image[:, top:top + side, left:left + side]
            if side != size:
                crop = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True,
                                     align_corners=False)[0].clamp(0, 1)
            crops[index] = crop
    if augment and n:
        flips = torch.rand(n, generator=generator) < 0.5
        turns = torch.randint(0, 4, (n,), generator=generator)
        for index in range(n):
            crop = crops[index]
            if flips[index]:
                crop = crop.flip(-1)
            crops[index] = torch.rot90(crop, int(turns[index]), dims=(-2, -1))
    return crops
