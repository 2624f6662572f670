"""Seedable CT phantom generators: random ellipses and a chest-like anatomical family.

Every generator returns ``(n, 1, size, size)`` float32 attenuation images in [0, 1] and
draws everything through a ``torch.Generator``, so a seed fixes the images on every
machine. Geometry is in normalised coordinates u, v ∈ [−1, 1] (v pointing up), so the
same seed draws the same shapes at any size.

* :func:`random_ellipses` follows the style of the standard "ellipses" CT benchmark:
  a random number of ellipses with random centres, axes, angles and (possibly negative)
  intensities are summed, clipped at 0 and scaled to a maximum of 1.
* :func:`chest_phantoms` draws an axial chest-like slice: an elliptic body outline of soft
  tissue with a fat layer, two lungs, a heart, a spine with vertebral body and canal, ribs
  along the body wall, vessels inside the lungs, and low-amplitude smooth soft-tissue
  texture.

The intensity levels of both predate the package's HU convention and are kept as they are (the
bundled CT prior was trained on them); docs/datasets.md gives the HU each level stands for.
:func:`~scoreinv.datasets.anatomy.anatomy_phantoms` (family ``"anatomy"``) draws tissues at their
HU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from scoreinv.datasets.anatomy import anatomy_phantoms


def _uniform(generator: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates u (right) and v (up) in [−1, 1], each (size, size)."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(-centres, centres, indexing="ij")
    return u, v


def _ellipse_masks(u, v, centre_u, centre_v, axis_u, axis_v, angle) -> torch.Tensor:
    """Indicator of ellipses, parameters (n, K) -> (n, K, H, W)."""
    du = u[None, None] - centre_u[..., None, None]
    dv = v[None, None] - centre_v[..., None, None]
    cos, sin = torch.cos(angle)[..., None, None], torch.sin(angle)[..., None, None]
    along = (du * cos + dv * sin) / axis_u[..., None, None]
    across = (-du * sin + dv * cos) / axis_v[..., None, None]
    return (along**2 + across**2 <= 1).float()


def _check(n: int, size: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")


def random_ellipses(
    n: int, size: int, generator: torch.Generator | None = None, max_ellipses: int = 20
) -> torch.Tensor:
    """``n`` random-ellipse phantoms, ``(n, 1, size, size)`` in [0, 1].

    Each image sums K ~ U{3, …, max_ellipses} ellipses with intensity U(0.1, 0.8)
    (negated and halved for one ellipse in five),
    centre inside the disc of radius 0.75, half-axes 0.05 + 0.45·U² (mostly small),
    and a uniform angle; the sum is clipped to [0, 1].
    """
    _check(n, size)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    u, v = _grid(size)
    k = max_ellipses
    count = torch.randint(3, max_ellipses + 1, (n, 1), generator=generator)
    active = (torch.arange(k)[None] < count).float()
    # mostly positive; one ellipse in five subtracts (holes, overlaps of lower density)
    subtract = torch.rand((n, k), generator=generator) < 0.2
    value = _uniform(generator, (n, k), 0.1, 0.8) * torch.where(subtract, -0.5, 1.0) * active
    radius = 0.75 * torch.sqrt(torch.rand((n, k), generator=generator))
    direction = _uniform(generator, (n, k), 0, 2 * math.pi)
    axes = 0.05 + 0.45 * torch.rand((n, k, 2), generator=generator) ** 2
    angle = _uniform(generator, (n, k), 0, math.pi)
    images = torch.empty(n, 1, size, size)
    for start in range(0, n, 32):  # bounded memory: (32, K, H, W) masks at a time
        s = slice(start, start + 32)
        masks = _ellipse_masks(u, v, radius[s] * torch.cos(direction[s]), radius[s] * torch.sin(direction[s]),
                               axes[s, :, 0], axes[s, :, 1], angle[s])
        images[s, 0] = (masks * value[s, :, None, None]).sum(dim=1).clamp(0, 1)
    return images


def _smooth_noise(generator: torch.Generator, n: int, size: int, scale_pixels: float) -> torch.Tensor:
    """Zero-mean, unit-std Gaussian noise smoothed by a Gaussian kernel of the given width."""
    noise = torch.randn((n, 1, size, size), generator=generator)
    radius = max(1, int(3 * scale_pixels))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * scale_pixels**2))
    kernel = kernel / kernel.sum()
    noise = F.conv2d(F.pad(noise, (radius, radius, 0, 0), mode="circular"), kernel.reshape(1, 1, 1, -1))
    noise = F.conv2d(F.pad(noise, (0, 0, radius, radius), mode="circular"), kernel.reshape(1, 1, -1, 1))
    return noise / noise.flatten(1).std(dim=1).clamp_min(1e-6)[:, None, None, None]


def chest_phantoms(n: int, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` chest-like axial slices, ``(n, 1, size, size)`` in [0, 1].

    Intensities (fraction of bone): air 0, lung 0.05, fat 0.25, soft tissue 0.35,
    heart/vessels 0.45, bone 0.9 (± random variation). Body half-axes ≈ 0.85 × 0.6 of
    the field of view, lungs either side of a heart in front of the spine, 6–9 ribs
    per side along the body wall, 3–8 vessels per lung.
    """
    _check(n, size)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    u, v = _grid(size)
    ones = torch.ones(n, 1)

    def draw(low, high, k=1):
        return _uniform(generator, (n, k), low, high)

    def paint(image, value, cu, cv, au, av, angle):
        mask = _ellipse_masks(u, v, cu, cv, au, av, angle)
        covered = mask.amax(dim=1, keepdim=True)
        values = value if torch.is_tensor(value) else torch.full((n, 1), float(value))
        return image * (1 - covered) + (mask * values[..., None, None]).amax(dim=1, keepdim=True) * covered

    image = torch.zeros(n, 1, size, size)
    body_u, body_v = draw(0.78, 0.92), draw(0.52, 0.66)
    tilt = draw(-0.08, 0.08)
    image = paint(image, draw(0.22, 0.28), 0 * ones, 0 * ones, body_u, body_v, tilt)           # fat layer
    image = paint(image, draw(0.33, 0.38), 0 * ones, 0 * ones, body_u - 0.06, body_v - 0.06, tilt)  # tissue
    lung_u, lung_v = draw(0.22, 0.30, 2), draw(0.32, 0.42, 2)
    lung_cu = torch.cat([-draw(0.34, 0.42), draw(0.34, 0.42)], dim=1)
    image = paint(image, torch.full((n, 2), 0.05), lung_cu, draw(0.0, 0.1, 2), lung_u, lung_v,
                  draw(-0.2, 0.2, 2))                                                             # lungs
    image = paint(image, draw(0.42, 0.48), draw(-0.08, 0.02), draw(0.02, 0.15), draw(0.16, 0.22),
                  draw(0.14, 0.2), draw(0, math.pi))                                              # heart
    # vessels inside each lung
    vessels = 8
    side = torch.where(torch.arange(vessels)[None] % 2 == 0, -1.0, 1.0).expand(n, vessels)
    active = (torch.arange(vessels)[None] < torch.randint(6, vessels + 1, (n, 1), generator=generator))
    cu = side * draw(0.26, 0.5, vessels)
    cv = draw(-0.2, 0.3, vessels)
    radius = draw(0.015, 0.045, vessels)
    value = torch.where(active, draw(0.4, 0.5, vessels), torch.zeros(n, vessels))
    vessel_mask = _ellipse_masks(u, v, cu, cv, radius, radius, torch.zeros(n, vessels)) * active[..., None, None]
    image = torch.maximum(image, (vessel_mask * value[..., None, None]).amax(dim=1, keepdim=True))
    # spine: vertebral body with a canal behind it
    spine_v = -(body_v - draw(0.2, 0.26))
    image = paint(image, draw(0.85, 0.95), draw(-0.02, 0.02), spine_v, draw(0.09, 0.12), draw(0.08, 0.11), 0 * ones)
    image = paint(image, 0.35 * ones, 0 * ones, spine_v - 0.13, 0.045 * ones, 0.04 * ones, 0 * ones)
    image = paint(image, draw(0.8, 0.9), 0 * ones, spine_v - 0.19, 0.05 * ones, 0.03 * ones, 0 * ones)
    # ribs: small bright ellipses along the inner body wall
    ribs = 16
    phase = torch.linspace(0.15, math.pi - 0.15, ribs // 2)
    phase = torch.cat([phase, phase + math.pi])[None].expand(n, ribs) + draw(-0.05, 0.05, ribs)
    rib_u = (body_u - 0.1) * torch.cos(phase)
    rib_v = (body_v - 0.1) * torch.sin(phase)
    rib_active = (torch.rand((n, ribs), generator=generator) < 0.8).float()
    rib_mask = _ellipse_masks(u, v, rib_u, rib_v, draw(0.025, 0.035, ribs), draw(0.012, 0.02, ribs), phase)
    image = torch.maximum(image, (rib_mask * (0.85 * rib_active)[..., None, None]).amax(dim=1, keepdim=True))
    # soft-tissue texture: smooth noise inside the body only, where the value is tissue-like
    texture = _smooth_noise(generator, n, size, scale_pixels=max(1.0, size / 32))
    tissue = ((image > 0.2) & (image < 0.5)).float()
    image = image + 0.015 * texture * tissue
    return image.clamp(0, 1)


FAMILIES = {"ellipses": random_ellipses, "chest": chest_phantoms, "anatomy": anatomy_phantoms}


def phantoms(family: str, n: int, size: int, seed: int) -> torch.Tensor:
    """``n`` phantoms of a family, seeded.

    Families: ``"ellipses"``, ``"chest"``, ``"mixed"`` (the first ``n // 2`` ellipses, the rest
    chest) and ``"anatomy"`` (:func:`~scoreinv.datasets.anatomy.anatomy_phantoms`: head, thorax
    and abdomen slices in turn).
    """
    generator = torch.Generator().manual_seed(int(seed))
    if family == "mixed":
        first = n // 2
        return torch.cat([random_ellipses(first, size, generator), chest_phantoms(n - first, size, generator)])
    if family not in FAMILIES:
        raise ValueError(f"unknown phantom family {family!r}; choose one of {sorted(FAMILIES) + ['mixed']}")
    return FAMILIES[family](n, size, generator)
