"""Procedural axial CT slices of the head, neck, shoulders, thorax and abdomen, in Hounsfield units.

:func:`anatomy_phantoms` draws ``(n, 1, size, size)`` float32 images in [0, 1] under the
package's CT convention (:mod:`scoreinv.datasets.hounsfield`: HU window [−1000, 2000]).
Unlike the piecewise-constant :func:`~scoreinv.datasets.phantoms.chest_phantoms`, every tissue
is drawn at its own HU (``TISSUE_HU``) with the variation real slices show:

* **Outlines**: body, head and organs are deformed ellipses (random low-order Fourier
  perturbations of the radius), with per-image size, aspect ratio, position and tilt.
* **Layers**: skin, subcutaneous fat and muscle of the body wall; scalp, outer table, diploë
  and inner table of the skull; cortical shells around cancellous bone (vertebrae, ribs,
  sternum, scapulae).
* **Texture**: each organ's HU varies smoothly across it (low-frequency fields, a few HU
  to 15 HU) with a fine parenchymal texture on top; lung parenchyma is mottled and denser
  posteriorly (dependent lung); cancellous bone (+180…+420 HU, the voxel average of marrow
  and trabeculae) is mottled by noise on cells of about 1/160 of the field (≈ 2 mm) averaged
  down to the pixels, so the mottle fades at low resolution as a voxel averages more of it.
* **Vessel trees**: branching, tapering trees from the hila into the lungs and from the
  porta hepatis into the liver, plus vessel cross-sections scattered in the lungs; the
  heart, aorta, vena cava and (head) falx. One image in three is contrast-enhanced.
* **Partial volume**: shapes are thresholded on a grid ``supersample`` (4) times finer
  than the output and averaged down, so an edge pixel holds the mixture of the tissues it
  covers; vessels and straight edges use their exact box-filtered coverage.

Regions (``region``): ``"head"`` (a brain slice at the level of the lateral ventricles:
scalp, skull, grey and white matter, sulci, ventricles, thalami, falx), ``"thorax"`` (body
wall, lungs with vessel trees, heart or the upper mediastinum with trachea and aortic arch,
aorta, spine, ribs, sternum, scapulae, a patient table) and ``"abdomen"`` (liver with
vessels, spleen, kidneys, stomach and bowel loops with gas, fluid and air-fluid levels, aorta,
vena cava, psoas and paraspinal muscles, spine, lower ribs, gallbladder, liver lesions);
``"neck"`` (thyroid level: cervical vertebra, posterior neck muscles, sternocleidomastoids,
strap muscles, thyroid lobes, trachea, oesophagus, carotid arteries and jugular veins) and
``"shoulder"`` (the shoulder joints: deltoids and trapezius, humeral heads, scapulae,
clavicles, first ribs, lung apices, T1, trachea, oesophagus, neck vessels, a table). The
default draws the first three only (``DEFAULT_REGIONS``).

At clinical sizes (256², 512²), three keywords add what such scans show, each off by
default so that a seed's images are unchanged: ``field_of_view`` (zoomed or widened
reconstructions; the pixel size in mm that sets every mm-sized detail scales with it),
``detail`` (a trabecular web, small lung vessels and bronchi, fat planes and septa, a thin
vertebral cortex, a curved table) and ``arms`` (arms beside the trunk). Detail is drawn at its
size in mm: each region has a usual field width (``_FIELD_MM``, e.g. 400 mm for the body),
and sub-pixel structures keep their partial volume (exact box-filtered coverage).

Geometry is in normalised coordinates u, v ∈ [−1, 1] (v pointing up = anterior; the
patient's right on the image's left, as CT is displayed). A seed fixes the images: all
geometry is drawn from the ``torch.Generator`` in blocks of a fixed number of images, so the
same seed draws the same anatomy at any size; the pixel-scale textures (fine texture,
trabeculae) are drawn from a generator seeded from it and depend on the size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from scoreinv.datasets.hounsfield import HU_WINDOW, TISSUE_HU

REGIONS: tuple[str, ...] = ("head", "thorax", "abdomen", "neck", "shoulder")
"""The body regions :func:`anatomy_phantoms` draws."""

DEFAULT_REGIONS: tuple[str, ...] = ("head", "thorax", "abdomen")
"""The regions drawn in turn when ``region`` is not given (the images these seeds have always drawn)."""

CLINICAL_FIELDS: dict[str, tuple[float, float]] = {
    "head": (0.9, 1.1), "thorax": (0.6, 1.3), "abdomen": (0.6, 1.3), "neck": (0.8, 1.2), "shoulder": (0.9, 1.15),
}
"""``field_of_view`` ranges per region as clinical reconstructions vary: the head's 220–260 mm, a body's
240–520 mm (zoomed to the organs or the spine, or wide enough for the arms), the neck's 200–300 mm, the
shoulders' 430–550 mm."""

LABELS: tuple[str, ...] = (
    "air", "fat", "muscle", "soft_tissue", "lung", "vessel", "heart", "liver", "spleen", "kidney",
    "bowel", "cancellous_bone", "cortical_bone", "csf", "grey_matter", "white_matter", "skin", "table",
    "marrow", "thyroid",
)
"""Tissue labels of ``return_labels=True``: label k is ``LABELS[k]`` (the tissue covering
most of the pixel, or the last drawn one where several are half-covered)."""

_LABEL = {name: index for index, name in enumerate(LABELS)}
_SIDES = torch.tensor([[-1.0, 1.0]])  # (1, 2): the patient's right and left, as image u
_TRABECULA_CELL_MM = 2.0  # the trabecular web's cell: struts about this far apart (as CT resolves them)
_TRABECULA_MM = 0.35  # a strut's thickness (blurred trabeculae, as a scanner of ~0.5 mm resolution shows them)
_ORGAN_CELL_MM = 3.0  # the parenchymal texture of organs and muscle with detail
_PSF_MM = 0.45  # the standard deviation of the point spread applied to sub-pixel detail
_BLOCK = 16  # images drawn together: fixed, so the geometry a seed draws does not depend on the size


def _hu(name: str) -> float:
    return TISSUE_HU[name][0]


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates u (right) and v (up) in [−1, 1], each (size, size)."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(-centres, centres, indexing="ij")
    return u, v


def _binomial_blur(x: torch.Tensor, passes: int = 1) -> torch.Tensor:
    kernel = torch.tensor([0.25, 0.5, 0.25])
    for _ in range(passes):
        x = F.conv2d(F.pad(x, (1, 1, 0, 0), mode="replicate"), kernel.reshape(1, 1, 1, 3))
        x = F.conv2d(F.pad(x, (0, 0, 1, 1), mode="replicate"), kernel.reshape(1, 1, 3, 1))
    return x


def _standardise(x: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(1)
    return (x - flat.mean(1).view(-1, 1, 1, 1)) / flat.std(1).clamp_min(1e-6).view(-1, 1, 1, 1)


class _Canvas:
    """One block of images under construction, in HU, with its coordinate grids and textures.

    ``hu`` and ``labels`` are at the output size N. Shapes are described by *level functions*
    (< 1 inside, ≈ the normalised radius) evaluated at the pixel centres; :meth:`covers`
    upsamples them bilinearly to the ``supersample``·N grid, thresholds there and averages
    down to a coverage fraction in [0, 1] per output pixel.
    """

    def __init__(self, n: int, size: int, supersample: int, generator: torch.Generator,
                 field_of_view: float | tuple[float, float] = 1.0, field_mm: float = 400.0,
                 detail: bool = False, arms: float = 0.0) -> None:
        self.n, self.size, self.supersample = n, size, supersample
        self.generator = generator
        # the pixel-scale textures come from their own stream so that the geometry does not depend on the size
        texture_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        texture = torch.Generator().manual_seed(texture_seed)
        # what the plain images do not draw (zoom, detail, arms) comes from a third stream, so that asking for it
        # leaves the anatomy the main stream draws unchanged
        self.side = torch.Generator().manual_seed(texture_seed ^ 0x5EED_DE7A11)
        self.detail, self.arms = detail, arms
        if isinstance(field_of_view, tuple):
            fov = field_of_view[0] + (field_of_view[1] - field_of_view[0]) * torch.rand(n, generator=self.side)
        else:
            fov = torch.full((n,), float(field_of_view))
        self.zoomed = isinstance(field_of_view, tuple) or float(field_of_view) != 1.0
        self.fov = fov
        # the pixel in normalised units (a float when not zoomed: the plain arithmetic, bit for bit) and in mm
        self.pixel = (2.0 * fov / size).view(-1, 1, 1, 1) if self.zoomed else 2.0 / size
        self.pixel_mm = fov * field_mm / size  # (n,)
        self.field_mm = field_mm
        # per-image pose: a small rotation and shift of the whole patient
        angle = self.uniform(-0.12, 0.12)
        shift_u, shift_v = self.uniform(-0.04, 0.04), self.uniform(-0.04, 0.04)
        grid_u, grid_v = _grid(size)
        scale = fov.view(-1, 1, 1, 1) if self.zoomed else 1.0
        self.image_u, self.image_v = grid_u.expand(n, 1, size, size) * scale, grid_v.expand(n, 1, size, size) * scale
        self.u, self.v = self._pose(self.image_u, self.image_v, angle, shift_u, shift_v)
        self._pose_params = (angle, shift_u, shift_v)
        # size-independent smooth fields (fixed coarse grids, so the same at any size), in the image frame
        self.low = _standardise(self._smooth(torch.randn((n, 3, 5, 5), generator=generator)))
        self.mid = _standardise(self._smooth(torch.randn((n, 1, 24, 24), generator=generator)))
        self.enhanced = torch.rand(n, generator=generator) < 1 / 3
        # pixel-scale texture and the trabecular mottle, from the texture stream
        self.fine = _standardise(_binomial_blur(torch.randn((n, 1, size, size), generator=texture)))
        # trabecular mottle: smooth noise on cells of 1/160 of the field (≈ 2 mm for a body), averaged down to
        # the pixels, so that it fades at low resolution as the voxel averages over more trabeculae
        factor = max(1, math.ceil(160 * float(fov.mean()) / size))
        mottle = _standardise(_binomial_blur(torch.randn((n, 1, factor * size, factor * size), generator=texture)))
        self.trabecular = F.avg_pool2d(mottle, factor) if factor > 1 else mottle
        self.organ = None
        if detail:
            self.trabecular = self._trabecular_network(texture)
            self.organ = self._patient_texture(texture, _ORGAN_CELL_MM)
        self._weights = _subpixel_weights(supersample)
        self.hu = torch.full((n, 1, size, size), _hu("air"))
        self.labels = torch.zeros((n, 1, size, size), dtype=torch.long)

    def _trabecular_network(self, texture: torch.Generator) -> torch.Tensor:
        """Relative bone fraction φ / φ̄ − 1 of a trabecular network, ``(n, 1, N, N)``.

        Trabeculae are the zero lines of two independent random fields, piecewise linear on
        cells of ``_TRABECULA_CELL_MM``, i.e. an irregular web of straight struts meeting at
        nodes, in the patient frame. Each strut is ``_TRABECULA_MM`` thick; its coverage of
        sub-pixels of about 0.5 mm (at most 1024² of them per image) is the exact box-filtered
        coverage of a strip at the distance |f| / |∇f| from the zero line, averaged down to the
        pixels. Where a pixel spans more than 0.6 cells (1.2 mm) a scan does not resolve the
        web and the relative fraction is the size-dependent mottle of the plain images instead.
        """
        mm = self.field_mm / 2  # mm per normalised unit
        extent = 1.3 * max(1.0, float(self.fov.max()))  # the coarse grid covers the patient frame [−extent, extent]
        cells = math.ceil(2 * extent * mm / _TRABECULA_CELL_MM)
        coarse = torch.randn((self.n, 2, cells, cells), generator=texture)
        out = 0.35 * self.trabecular
        angle, shift_u, shift_v = self._pose_params
        for i in range(self.n):
            pixel_mm = float(self.pixel_mm[i])
            if pixel_mm > 0.6 * _TRABECULA_CELL_MM:
                continue
            k = max(1, min(math.ceil(pixel_mm / 0.5), 1024 // self.size))
            fine_u, fine_v = _grid(k * self.size)
            fine_u, fine_v = self._pose(fine_u * float(self.fov[i]), fine_v * float(self.fov[i]),
                                        angle[i:i + 1], shift_u[i:i + 1], shift_v[i:i + 1])
            grid = torch.stack([fine_u[:, 0], -fine_v[:, 0]], -1) / extent
            field = F.grid_sample(coarse[i:i + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)
            # distance to the zero line in sub-pixels: |f| / |∇f| (central differences)
            padded = F.pad(field, (1, 1, 1, 1), mode="replicate")
            gx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
            gy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
            distance = field.abs() / torch.sqrt(gx * gx + gy * gy).clamp_min(1e-6)
            half = _TRABECULA_MM / 2 / (pixel_mm / k)
            strut = ((distance + half).clamp(max=0.5) - (distance - half).clamp(min=-0.5)).clamp(0, 1)
            fraction = 1 - (1 - strut[:, 0]) * (1 - strut[:, 1])  # the union of the two webs
            fraction = F.avg_pool2d(fraction[:, None], k) if k > 1 else fraction[:, None]
            # the scanner's point spread (σ ≈ _PSF_MM): binomial passes of variance 1/2 pixel² each
            passes = round(2 * (_PSF_MM / pixel_mm) ** 2)
            fraction = _binomial_blur(fraction, passes) if passes else fraction
            out[i] = fraction[0] / fraction.mean().clamp_min(1e-6) - 1
        return out

    def _patient_texture(self, texture: torch.Generator, cell_mm: float) -> torch.Tensor:
        """Standardised smooth noise on cells of ``cell_mm`` fixed to the patient, ``(n, 1, N, N)``."""
        extent = 1.3 * max(1.0, float(self.fov.max()))
        cells = math.ceil(2 * extent * self.field_mm / 2 / cell_mm)
        coarse = torch.randn((self.n, 1, cells, cells), generator=texture)
        grid = torch.stack([self.u[:, 0], -self.v[:, 0]], -1) / extent
        return _standardise(F.grid_sample(coarse, grid, mode="bicubic", padding_mode="border", align_corners=False))

    def _smooth(self, coarse: torch.Tensor) -> torch.Tensor:
        """A coarse random grid over the unzoomed field, bicubically interpolated at the pixels."""
        if not self.zoomed:
            return F.interpolate(coarse, size=(self.size, self.size), mode="bicubic", align_corners=False)
        grid = torch.stack([self.image_u[:, 0], -self.image_v[:, 0]], -1)  # x right, y down
        return F.grid_sample(coarse, grid, mode="bicubic", padding_mode="border", align_corners=False)

    @staticmethod
    def _pose(u, v, angle, shift_u, shift_v):
        cos, sin = torch.cos(angle).view(-1, 1, 1, 1), torch.sin(angle).view(-1, 1, 1, 1)
        du, dv = u - shift_u.view(-1, 1, 1, 1), v - shift_v.view(-1, 1, 1, 1)
        return du * cos + dv * sin, -du * sin + dv * cos

    # random draws (geometry: from the block's generator)
    def uniform(self, low: float, high: float, *shape: int, side: bool = False) -> torch.Tensor:
        generator = self.side if side else self.generator
        return low + (high - low) * torch.rand((self.n, *shape), generator=generator)

    def normal(self, *shape: int, side: bool = False) -> torch.Tensor:
        return torch.randn((self.n, *shape), generator=self.side if side else self.generator)

    def chance(self, p: float, *shape: int, side: bool = False) -> torch.Tensor:
        return torch.rand((self.n, *shape), generator=self.side if side else self.generator) < p

    # shapes
    def level(self, cu, cv, au, av, angle=0.0, wobble=0.0, harmonics: int = 4, side: bool = False) -> torch.Tensor:
        """The union of K deformed ellipses: min over K of ρ / r(θ), ``(n, 1, 2N, 2N)``.

        Parameters are ``(n,)`` or ``(n, K)`` tensors or floats; ``wobble`` scales random
        radial harmonics 2…harmonics+1 (amplitude ``wobble / k``).
        """
        params = [torch.as_tensor(p, dtype=torch.float32) for p in (cu, cv, au, av, angle, wobble)]
        k = max((p.shape[1] if p.ndim == 2 else 1) for p in params)
        params = [p.reshape(self.n, -1).expand(self.n, k) if p.ndim else p.expand(self.n, k) for p in params]
        cu, cv, au, av, angle, wobble = params
        orders = torch.arange(2, harmonics + 2, dtype=torch.float32)
        amplitude = wobble[..., None] * self.normal(k, harmonics, side=side) / orders
        phase = self.uniform(0, 2 * math.pi, k, harmonics, side=side)
        alpha, beta = amplitude * torch.cos(phase), amplitude * torch.sin(phase)
        result = None
        for j in range(k):
            du = self.u - cu[:, j].view(-1, 1, 1, 1)
            dv = self.v - cv[:, j].view(-1, 1, 1, 1)
            cos, sin = torch.cos(angle[:, j]).view(-1, 1, 1, 1), torch.sin(angle[:, j]).view(-1, 1, 1, 1)
            x = (du * cos + dv * sin) / au[:, j].view(-1, 1, 1, 1)
            y = (-du * sin + dv * cos) / av[:, j].view(-1, 1, 1, 1)
            rho = torch.sqrt(x * x + y * y)
            level = rho
            if harmonics and bool((wobble[:, j] != 0).any()):
                # r(θ) = 1 + Σ_k a_k cos(kθ − φ_k), with cos kθ, sin kθ from powers of (x + iy)/ρ
                c1, s1 = x / rho.clamp_min(1e-9), y / rho.clamp_min(1e-9)
                ck, sk = c1, s1
                radius = torch.ones_like(rho)
                for h in range(harmonics):
                    ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
                    radius = radius + alpha[:, j, h].view(-1, 1, 1, 1) * ck + beta[:, j, h].view(-1, 1, 1, 1) * sk
                level = rho / radius.clamp_min(0.3)
            result = level if result is None else torch.minimum(result, level)
        return result

    def covers(self, level: torch.Tensor, *thresholds) -> list[torch.Tensor]:
        """Coverage fractions ``(n, 1, N, N)`` of ``level < t`` for each threshold (float or ``(n,)``).

        The level function is upsampled bilinearly to the ``supersample`` times finer grid,
        thresholded there and averaged over each output pixel. Only pixels whose 3×3
        neighbourhood straddles the threshold can be partly covered (a bilinear value is a
        convex combination of its neighbours), so only those are supersampled; the result is
        the same as upsampling the whole image.
        """
        n, size = level.shape[0], level.shape[-1]
        # (n, 9, N·N): the 3×3 neighbourhood of every pixel, edges replicated as bilinear upsampling does
        neighbours = F.unfold(F.pad(level, (1, 1, 1, 1), mode="replicate"), 3)
        lowest, highest = neighbours.amin(1).view_as(level), neighbours.amax(1).view_as(level)
        out = []
        for t in thresholds:
            t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(n)
            column = t.view(-1, 1, 1, 1)
            coverage = (level < column).float()
            b, _, i, j = ((lowest < column) & (highest >= column)).nonzero(as_tuple=True)
            if b.numel():
                fine = neighbours[b, :, i * size + j] @ self._weights.T  # (m, supersample²) sub-pixel levels
                coverage = coverage.index_put((b, torch.zeros_like(b), i, j), (fine < t[b, None]).float().mean(1))
            out.append(coverage)
        return out

    def cover(self, level: torch.Tensor, threshold=1.0) -> torch.Tensor:
        return self.covers(level, threshold)[0]

    def segments(self, x0, y0, x1, y1, radius) -> torch.Tensor:
        """Coverage of the union of K capsules (segments with a radius), ``(n, K)`` parameters.

        Each pixel's coverage is the exact box-filtered coverage of a strip of half-width
        ``radius`` at the pixel centre's distance from the segment, so vessels thinner than a
        pixel keep their partial volume.
        """
        h = self.pixel
        result = torch.zeros(self.n, 1, self.size, self.size)
        for j in range(x0.shape[1]):
            ax, ay = x0[:, j].view(-1, 1, 1, 1), y0[:, j].view(-1, 1, 1, 1)
            ex, ey = (x1[:, j] - x0[:, j]).view(-1, 1, 1, 1), (y1[:, j] - y0[:, j]).view(-1, 1, 1, 1)
            r = radius[:, j].view(-1, 1, 1, 1)
            du, dv = self.u - ax, self.v - ay
            t = ((du * ex + dv * ey) / (ex * ex + ey * ey).clamp_min(1e-12)).clamp(0, 1)
            d = torch.sqrt((du - t * ex) ** 2 + (dv - t * ey) ** 2)
            covered = (d + r).clamp(max=h / 2) - (d - r).clamp(min=-h / 2)
            result = torch.maximum(result, (covered / h).clamp(0, 1))
        return result

    def stamps(self, x0, y0, x1, y1, radius) -> torch.Tensor:
        """Coverage of many short capsules (segments with a radius), ``(n, K)`` parameters.

        The same box-filtered strip coverage as :meth:`segments`, evaluated only in a window
        of P×P pixels around each capsule (P from the longest capsule) and merged by the
        maximum, so the cost is ``n·K·P²`` instead of ``n·K·N²``: for the hundreds of small
        vessels and septa of ``detail``.
        """
        n, size, k = self.n, self.size, x0.shape[1]
        if k == 0:
            return torch.zeros(n, 1, size, size)
        angle, shift_u, shift_v = (p.view(-1, 1) for p in self._pose_params)
        fov = self.fov.view(-1, 1)
        h = (2 * fov / size).view(-1, 1, 1)  # (n, 1, 1)

        def to_image(u, v):  # the patient frame back to the image frame (the inverse of _pose)
            cos, sin = torch.cos(angle), torch.sin(angle)
            return u * cos - v * sin + shift_u, u * sin + v * cos + shift_v

        au, av = to_image(x0, y0)
        bu, bv = to_image(x1, y1)
        # pixel (column, row) of the window's corner: the capsule's bounding box in pixels, less a margin
        col = ((torch.minimum(au, bu) - radius) / fov + 1) * size / 2 - 1.5
        row = (1 - (torch.maximum(av, bv) + radius) / fov) * size / 2 - 1.5
        extent = torch.maximum((au - bu).abs(), (av - bv).abs()) + 2 * radius
        p = int(math.ceil(float((extent / (2 * fov / size)).max()))) + 4
        flat = torch.zeros(n, size * size + 1)
        offsets = torch.arange(p, dtype=torch.float32)
        chunk = max(1, 2_000_000 // (n * p * p))
        for start in range(0, k, chunk):
            part = slice(start, start + chunk)
            c0, r0 = col[:, part].floor(), row[:, part].floor()  # (n, m)
            cols = c0[..., None, None] + offsets.view(1, 1, 1, p)  # (n, m, 1, p)
            rows = r0[..., None, None] + offsets.view(1, 1, p, 1)  # (n, m, p, 1)
            pu = ((cols + 0.5) * 2 / size - 1) * fov[..., None, None]
            pv = (1 - (rows + 0.5) * 2 / size) * fov[..., None, None]
            ax, ay = au[:, part, None, None], av[:, part, None, None]
            ex, ey = (bu - au)[:, part, None, None], (bv - av)[:, part, None, None]
            du, dv = pu - ax, pv - ay
            t = ((du * ex + dv * ey) / (ex * ex + ey * ey).clamp_min(1e-12)).clamp(0, 1)
            d = torch.sqrt((du - t * ex) ** 2 + (dv - t * ey) ** 2)
            r = radius[:, part, None, None]
            hh = h[..., None]
            covered = (((d + r).clamp(max=hh / 2) - (d - r).clamp(min=-hh / 2)) / hh).clamp(0, 1)
            inside = (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
            index = torch.where(inside, rows * size + cols, torch.full_like(rows * cols, size * size)).long()
            flat.scatter_reduce_(1, index.reshape(n, -1), covered.reshape(n, -1), "amax")
        return flat[:, :-1].reshape(n, 1, size, size)

    def half_plane(self, v0, above: bool = True, image_frame: bool = True) -> torch.Tensor:
        """Coverage of ``v > v0`` (or ``v < v0``) with exact partial volume at the line."""
        v = self.image_v if image_frame else self.v
        signed = (v - torch.as_tensor(v0).view(-1, 1, 1, 1)) / self.pixel
        return (signed + 0.5).clamp(0, 1) if above else (0.5 - signed).clamp(0, 1)

    # intensities
    def value(self, hu, low: float | torch.Tensor = 0.0, fine: float | torch.Tensor = 0.0,
              mid: float | torch.Tensor = 0.0, field: int = 0, organ: float = 0.0) -> torch.Tensor:
        """A tissue's HU field: ``hu`` (float or ``(n,)``) plus smooth (``low``), mid-scale and fine texture,
        and with ``detail`` a parenchymal texture on ~3 mm cells of the patient (``organ``, HU)."""
        def column(x):
            return torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 1, 1)

        result = (column(hu) + column(low) * self.low[:, field:field + 1] + column(mid) * self.mid
                  + column(fine) * self.fine)
        return result + organ * self.organ if organ and self.organ is not None else result

    def paint(self, coverage: torch.Tensor, value, label: str) -> None:
        """Lay a tissue over what is there: ``hu ← hu + coverage · (value − hu)``."""
        value = value if torch.is_tensor(value) and value.ndim == 4 else self.value(value)
        self.hu = self.hu + coverage * (value - self.hu)
        self.labels = torch.where(coverage > 0.5, _LABEL[label], self.labels)

    def tissue(self, name: str, spread: float = 1.0, side: bool = False) -> torch.Tensor:
        """A per-image HU drawn uniformly within ``TISSUE_HU[name]`` (its range scaled by ``spread``)."""
        typical, low, high = TISSUE_HU[name]
        return typical + spread * (low - typical + (high - low) * self.uniform(0, 1, side=side))

    def blood(self, side: bool = False) -> torch.Tensor:
        """Blood HU: unenhanced, or 150–300 HU where the image is contrast-enhanced."""
        return torch.where(self.enhanced, self.uniform(150, 300, side=side), self.tissue("blood", side=side))

    def cancellous(self) -> torch.Tensor:
        """Cancellous bone: marrow and trabeculae averaged over the voxel (+180…+420 HU), mottled.

        With ``detail`` the mottle is the trabecular web: ``HU = mean + (mean − marrow)·(φ/φ̄ − 1)``,
        marrow pixels at the marrow's HU (−30…+60) and struts denser, the mean unchanged.
        """
        mean, amplitude = self.uniform(180, 420).view(-1, 1, 1, 1), self.uniform(80, 140).view(-1, 1, 1, 1)
        if self.detail:
            marrow = self.uniform(-30, 60, side=True).view(-1, 1, 1, 1)
            return mean + (mean - marrow) * self.trabecular + 8 * self.fine
        return mean + amplitude * self.trabecular + 8 * self.fine

    def bone(self, level: torch.Tensor, shell: float | torch.Tensor) -> None:
        """Cortical shell (``level < 1``) around cancellous bone (``level < 1 − shell``)."""
        outer, inner = self.covers(level, 1.0, 1 - torch.as_tensor(shell))
        self.paint(outer, self.tissue("cortical_bone", 0.8).view(-1, 1, 1, 1) + 30 * self.fine, "cortical_bone")
        self.paint(inner, self.cancellous(), "cancellous_bone")

    def tree(self, root_u, root_v, direction, length, radius, depth: int, spread=(0.35, 0.7), side: bool = False,
             shrink=((0.55, 0.85), (0.6, 0.8))):
        """A branching vessel tree per root: ``(n, R)`` roots and directions -> segment tensors ``(n, K)``.

        Each generation forks in two, turned by ``spread`` radians, its length and radius
        scaled by factors drawn from ``shrink`` = (length range, radius range).
        """
        x0s, y0s, x1s, y1s, radii = [], [], [], [], []
        u, v, a, ell, r = root_u, root_v, direction, length, radius
        for _ in range(depth):
            a = a + 0.15 * self.normal(*a.shape[1:], side=side)
            x1, y1 = u + ell * torch.cos(a), v + ell * torch.sin(a)
            x0s.append(u), y0s.append(v), x1s.append(x1), y1s.append(y1), radii.append(r)
            turn = self.uniform(*spread, *a.shape[1:], side=side)
            u, v = torch.cat([x1, x1], 1), torch.cat([y1, y1], 1)
            a = torch.cat([a + turn, a - turn * self.uniform(0.6, 1.2, *a.shape[1:], side=side)], 1)
            ell = torch.cat([ell, ell], 1) * self.uniform(*shrink[0], 2 * ell.shape[1], side=side)
            r = torch.cat([r, r], 1) * self.uniform(*shrink[1], 2 * r.shape[1], side=side)
        return (torch.cat(x0s, 1), torch.cat(y0s, 1), torch.cat(x1s, 1), torch.cat(y1s, 1), torch.cat(radii, 1))


def _subpixel_weights(factor: int) -> torch.Tensor:
    """``(factor², 9)``: bilinear weights (``align_corners=False``) of a pixel's 3×3 neighbourhood
    at the centres of its ``factor × factor`` sub-pixels, row-major like ``F.unfold``."""
    offsets = (torch.arange(factor, dtype=torch.float32) + 0.5) / factor - 0.5  # in pixels, from the centre
    weights = torch.zeros(factor, 3)
    weights[:, 0] = (-offsets).clamp_min(0)
    weights[:, 1] = 1 - offsets.abs()
    weights[:, 2] = offsets.clamp_min(0)
    return (weights[:, None, :, None] * weights[None, :, None, :]).reshape(factor * factor, 9)


# ----------------------------------------------------------------------------------------------------------------
# body wall, spine and ribs (thorax and abdomen)


def _trunk(c: _Canvas, width: tuple[float, float], depth: tuple[float, float], fat: tuple[float, float],
           cavity_hu: torch.Tensor, cavity_mottle: float = 0.0) -> dict[str, torch.Tensor]:
    """Skin, subcutaneous fat, muscle wall and the inner cavity; returns the body's geometry."""
    au, av = c.uniform(*width), c.uniform(*depth)
    cv = c.uniform(-0.06, 0.02)
    fat_t, muscle_t = c.uniform(*fat), c.uniform(0.04, 0.08)
    body = c.level(0.0, cv, au, av, c.uniform(-0.05, 0.05), wobble=0.05)
    skin, subcutaneous, wall, cavity = c.covers(body, 1.0, 0.985, 1 - fat_t, 1 - fat_t - muscle_t)
    c.paint(skin, c.value(c.tissue("soft_tissue"), fine=5), "skin")
    c.paint(subcutaneous, c.value(c.tissue("fat"), low=8, fine=6, field=1), "fat")
    c.paint(wall, c.value(c.tissue("muscle"), low=5, fine=6, field=2, organ=4), "muscle")
    # with detail the cavity's mid-scale mottle gives way to mesenteric vessels and nodes (drawn below)
    c.paint(cavity, c.value(cavity_hu, low=10, mid=cavity_mottle * (0.4 if c.detail else 1.0), fine=6, field=1),
            "fat")
    inner = 1 - fat_t - muscle_t
    spine_v = cv - av * c.uniform(0.45, 0.55)  # the vertebral body's centre, behind the organs
    geometry = {"au": au, "av": av, "cv": cv, "inner": inner, "cavity": cavity, "fat_t": fat_t, "spine_v": spine_v,
                "level": body}
    if c.detail:
        _wall_detail(c, geometry, body, subcutaneous, wall, muscle_t)
    return geometry


def _ellipse_points(c: _Canvas, body: dict[str, torch.Tensor], theta: torch.Tensor, rho: torch.Tensor):
    """Points at polar angle ``theta`` and normalised radius ``rho`` of the body ellipse, ``(n, K)`` each."""
    return (rho * body["au"].view(-1, 1) * torch.cos(theta),
            body["cv"].view(-1, 1) + rho * body["av"].view(-1, 1) * torch.sin(theta))


def _wall_detail(c: _Canvas, body: dict[str, torch.Tensor], level: torch.Tensor, subcutaneous: torch.Tensor,
                 wall: torch.Tensor, muscle_t: torch.Tensor) -> None:
    """Fat planes between the muscles of the wall, fibrous septa and small vessels in the subcutaneous fat."""
    fat_t = body["fat_t"]
    mm = c.field_mm / 2
    # a fat plane parallel to the skin that splits the wall into two layers over an arc (pectoral, oblique muscles)
    for _ in range(2):
        middle = 1 - fat_t - muscle_t * c.uniform(0.35, 0.65, side=True)
        half = c.uniform(0.6, 1.5, side=True) / mm / body["au"]  # 0.6–1.5 mm, in level units
        outer, inner = c.covers(level, middle + half, middle - half)
        theta = torch.atan2((c.v - body["cv"].view(-1, 1, 1, 1)) / body["av"].view(-1, 1, 1, 1),
                            c.u / body["au"].view(-1, 1, 1, 1))
        centre, width = c.uniform(-math.pi, math.pi, side=True), c.uniform(0.5, 1.4, side=True)
        offset = torch.remainder(theta - centre.view(-1, 1, 1, 1) + math.pi, 2 * math.pi) - math.pi
        arc = torch.sigmoid((width.view(-1, 1, 1, 1) - offset.abs()) * 6)
        c.paint((outer - inner).clamp(0, 1) * arc * wall, c.value(c.tissue("fat", side=True), fine=6), "fat")
    # fat planes across the wall, between neighbouring muscles
    k = 8
    theta = c.uniform(-math.pi, math.pi, k, side=True)
    inner_rho = (1 - fat_t - muscle_t).view(-1, 1) - 0.01
    outer_rho = (1 - fat_t).view(-1, 1) + 0.01
    x0, y0 = _ellipse_points(c, body, theta, inner_rho.expand(-1, k))
    x1, y1 = _ellipse_points(c, body, theta + c.uniform(-0.05, 0.05, k, side=True), outer_rho.expand(-1, k))
    planes = c.stamps(x0, y0, x1, y1, c.uniform(0.4, 1.0, k, side=True) / mm)
    c.paint(planes * wall, c.value(c.tissue("fat", side=True), fine=6), "fat")
    # fibrous septa and small vessels in the subcutaneous fat: short thin strands
    k = 48
    theta = c.uniform(-math.pi, math.pi, k, side=True)
    rho = (1 - fat_t).view(-1, 1) + fat_t.view(-1, 1) * c.uniform(0.05, 0.95, k, side=True)
    x0, y0 = _ellipse_points(c, body, theta, rho)
    direction = theta + c.uniform(-1.2, 1.2, k, side=True) + math.pi * c.chance(0.5, k, side=True).float()
    length = c.uniform(2, 12, k, side=True) / mm
    strands = c.stamps(x0, y0, x0 + length * torch.cos(direction), y0 + length * torch.sin(direction),
                       c.uniform(0.15, 0.4, k, side=True) / mm)
    c.paint(strands * subcutaneous, c.value(c.uniform(-10, 40, side=True), fine=4), "soft_tissue")
    # small vessels and lymph nodes in the fat of the cavity (organs drawn later cover those inside them)
    k = 60
    rho, theta = torch.sqrt(c.uniform(0, 1, k, side=True)) * (1 - fat_t - muscle_t).view(-1, 1), c.uniform(
        -math.pi, math.pi, k, side=True)
    x0, y0 = _ellipse_points(c, body, theta, rho)
    direction = c.uniform(-math.pi, math.pi, k, side=True)
    length = c.uniform(0, 10, k, side=True) / mm * c.chance(0.5, k, side=True).float()
    # as many per area as in an adult trunk's cavity (~47,000 mm²): fewer in the neck
    area = math.pi * body["au"] * body["av"] * (1 - fat_t - muscle_t) ** 2 * mm**2
    kept = c.uniform(0, 1, k, side=True) < (area / 47_000).clamp(max=1).view(-1, 1)
    dots = c.stamps(x0, y0, x0 + length * torch.cos(direction), y0 + length * torch.sin(direction),
                    c.uniform(0.6, 2.5, k, side=True) / mm * kept.float())
    c.paint(dots * body["cavity"], c.value(torch.where(c.enhanced, c.uniform(100, 250, side=True),
                                                       c.uniform(30, 50, side=True)), fine=5), "vessel")


def _spine(c: _Canvas, body: dict[str, torch.Tensor], scale: torch.Tensor) -> None:
    """Paraspinal muscles, vertebral body, posterior elements and the spinal canal at ``body["spine_v"]``."""
    spine_v = body["spine_v"]
    # paraspinal muscles behind the transverse processes
    muscles = c.level(_SIDES * scale.view(-1, 1) * 0.12 * torch.ones(c.n, 2)
                      * c.uniform(0.9, 1.1, 1), (spine_v - 0.15 * scale).view(-1, 1).expand(c.n, 2),
                      0.1 * scale.view(-1, 1) * c.uniform(0.8, 1.1, 2),
                      0.075 * scale.view(-1, 1) * c.uniform(0.8, 1.1, 2),
                      c.uniform(-0.3, 0.3, 2), wobble=0.06)
    c.paint(c.cover(muscles), c.value(c.tissue("muscle"), low=4, fine=6, field=2), "muscle")
    # posterior arch (laminae), spinous and transverse processes
    canal_v = spine_v - 0.13 * scale
    arch_u = torch.stack([torch.zeros(c.n), torch.zeros(c.n), -0.09 * scale, 0.09 * scale], 1)
    arch_v = torch.stack([canal_v - 0.02 * scale, canal_v - 0.1 * scale, canal_v + 0.01 * scale,
                          canal_v + 0.01 * scale], 1)
    arch_au = torch.stack([0.075 * scale, 0.018 * scale, 0.06 * scale, 0.06 * scale], 1)
    arch_av = torch.stack([0.06 * scale, 0.05 * scale, 0.018 * scale, 0.018 * scale], 1)
    arch = c.level(arch_u, arch_v, arch_au, arch_av, torch.stack([torch.zeros(c.n), torch.zeros(c.n),
                                                                  c.uniform(0.1, 0.4), -c.uniform(0.1, 0.4)], 1))
    c.bone(arch, 0.45)
    vertebra = c.level(c.uniform(-0.01, 0.01), spine_v, scale * c.uniform(0.095, 0.115),
                       scale * c.uniform(0.08, 0.095), 0.0, wobble=0.04)
    c.bone(vertebra, c.uniform(0.1, 0.16) * (0.5 if c.detail else 1.0))  # the cortex is ~1 mm where resolved
    canal = c.level(0.0, canal_v, 0.045 * scale, 0.04 * scale, 0.0, wobble=0.05)
    c.paint(c.cover(canal), c.value(c.uniform(15, 30), fine=3), "csf")


def _ribs(c: _Canvas, body: dict[str, torch.Tensor], count: int, arc: tuple[float, float], present: float,
          scale: torch.Tensor) -> None:
    """Ribs along the inner body wall, at polar angles within ``arc`` on both sides (0 = patient's left)."""
    phase = torch.linspace(arc[0], arc[1], count)[None] + c.uniform(-0.06, 0.06, count)
    phase = torch.cat([phase, math.pi - phase], 1)
    radius = body["inner"].view(-1, 1) + c.uniform(0.0, 0.04, 2 * count)
    ru = radius * body["au"].view(-1, 1) * torch.cos(phase)
    rv = body["cv"].view(-1, 1) + radius * body["av"].view(-1, 1) * torch.sin(phase)
    keep = c.chance(present, 2 * count)
    absent = torch.full((c.n, 2 * count), 1e-4)  # a rib that is not in this slice: a vanishing ellipse
    size_u = torch.where(keep, c.uniform(0.035, 0.05, 2 * count), absent) * scale.view(-1, 1)
    size_v = torch.where(keep, c.uniform(0.016, 0.024, 2 * count), absent) * scale.view(-1, 1)
    tangent = torch.atan2(body["av"].view(-1, 1) * torch.cos(phase), -body["au"].view(-1, 1) * torch.sin(phase))
    c.bone(c.level(ru, rv, size_u, size_v, tangent, wobble=0.05), 0.4)


def _table(c: _Canvas, body: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The patient table under the back (in the image frame), in one image of two.

    Plain: a flat slab. With ``detail``: a curved shell (its surfaces rise towards the sides),
    wider than the body, with a foam core between two thin dense skins. Returns its top
    surface ``v = top + curve·u²`` as ``(top, curve)``, ``(n,)`` each (also where it is absent:
    the arms rest at that height).
    """
    top = body["cv"] - body["av"] - c.uniform(0.03, 0.08)
    present = c.chance(0.5).float().view(-1, 1, 1, 1)
    thickness = c.uniform(0.025, 0.04)
    core_hu, skin_hu = c.uniform(-300, -100), [c.uniform(200, 500), c.uniform(200, 500)]
    if c.detail:
        # curved surfaces v = edge + curve·u², up to the table's rounded side edges at |u| = half_width
        curve = c.uniform(0.05, 0.3, side=True).view(-1, 1, 1, 1)
        half_width = c.uniform(0.9, 1.25, side=True).view(-1, 1, 1, 1)
        rise = curve * c.image_u ** 2
        width = ((half_width - c.image_u.abs()) / c.pixel + 0.5).clamp(0, 1) * present

        def below(edge):  # coverage of v < edge + rise
            return (0.5 - (c.image_v - edge.view(-1, 1, 1, 1) - rise) / c.pixel).clamp(0, 1)

        core_hu = c.uniform(-950, -400, side=True)
        thickness = c.uniform(15, 45, side=True) / (c.field_mm / 2)  # a clinical table is 15–45 mm thick
        c.paint((below(top) - below(top - thickness)).clamp(0, 1) * width, c.value(core_hu, fine=10), "table")
        skin = c.uniform(0.6, 1.2, side=True) / (c.field_mm / 2)  # each skin 1.2–2.4 mm
        for edge, hu in zip((top, top - thickness), skin_hu):
            c.paint((below(edge + skin) - below(edge - skin)).clamp(0, 1) * width, c.value(hu), "table")
        return top, curve.view(-1)
    slab = c.half_plane(top, above=False) * c.half_plane(top - thickness, above=True)
    slab = slab * (c.image_u.abs() < 0.8).float() * present
    c.paint(slab, c.value(core_hu, fine=10), "table")
    for edge, hu in zip((top, top - thickness), skin_hu):
        skin = (c.half_plane(edge + 0.004, above=False) * c.half_plane(edge - 0.004, above=True)
                * (c.image_u.abs() < 0.8).float() * present)
        c.paint(skin, c.value(hu), "table")
    return top, torch.zeros(c.n)


# ----------------------------------------------------------------------------------------------------------------
# regions


def _head(c: _Canvas) -> None:
    au, av, cv = c.uniform(0.56, 0.7), c.uniform(0.72, 0.86), c.uniform(-0.04, 0.04)
    head = c.level(0.0, cv, au, av, 0.0, wobble=0.04)
    scalp_t, outer_t, diploe_t, inner_t = (c.uniform(0.04, 0.07), c.uniform(0.015, 0.025), c.uniform(0.02, 0.05),
                                           c.uniform(0.015, 0.025))
    skull = 1 - scalp_t
    brain = skull - outer_t - diploe_t - inner_t
    csf_t = c.uniform(0.01, 0.03)
    scalp, outer, diploe, inner, space, cortex = c.covers(head, 1.0, skull, skull - outer_t, skull - outer_t - diploe_t,
                                                          brain, brain - csf_t)
    c.paint(scalp, c.value(c.uniform(-40, 40), fine=8), "skin")
    c.paint(outer, c.tissue("cortical_bone", 0.8).view(-1, 1, 1, 1) + 30 * c.fine, "cortical_bone")
    c.paint(diploe, c.cancellous(), "cancellous_bone")
    c.paint(inner, c.tissue("cortical_bone", 0.8).view(-1, 1, 1, 1) + 30 * c.fine, "cortical_bone")
    c.paint(space, c.value(c.tissue("csf"), fine=2), "csf")
    c.paint(cortex, c.value(c.tissue("grey_matter"), low=2, fine=2.5), "grey_matter")
    # sulci: CSF clefts in the outer band of the cortex where the mid-scale field is high
    band = cortex * (1 - c.cover(head, (brain - csf_t) * c.uniform(0.8, 0.88)))
    sulci = band * torch.sigmoid((c.mid - c.uniform(0.6, 1.2).view(-1, 1, 1, 1)) * 4)
    c.paint(sulci, c.value(c.tissue("csf"), fine=2), "csf")
    # white matter: a lobulated inner region
    brain_au, brain_av = au * (brain - csf_t), av * (brain - csf_t)
    white = c.level(0.0, cv + c.uniform(-0.02, 0.03), brain_au * c.uniform(0.68, 0.78), brain_av * c.uniform(0.7, 0.8),
                    0.0, wobble=0.12, harmonics=6)
    c.paint(c.cover(white), c.value(c.tissue("white_matter"), low=2, fine=2, field=1), "white_matter")
    # thalami and basal ganglia: deep grey matter either side of the midline
    deep = c.level(_SIDES * c.uniform(0.07, 0.1, 1) * au.view(-1, 1) / 0.63,
                   (cv - 0.06 * av / 0.8 + c.uniform(-0.02, 0.02)).view(-1, 1).expand(c.n, 2),
                   c.uniform(0.05, 0.07, 2), c.uniform(0.07, 0.1, 2), c.uniform(-0.3, 0.3, 2), wobble=0.05)
    c.paint(c.cover(deep) * c.chance(0.7).float().view(-1, 1, 1, 1), c.value(c.tissue("grey_matter"), fine=2),
            "grey_matter")
    # lateral ventricles (frontal horns closer to the midline) and the third ventricle
    spread, tilt = c.uniform(0.06, 0.1), c.uniform(0.15, 0.4)
    length, width = c.uniform(0.14, 0.26), c.uniform(0.03, 0.065)
    ventricle_v = cv + c.uniform(0.0, 0.08)
    ventricles = c.level(torch.stack([-spread, spread, torch.zeros(c.n)], 1),
                         torch.stack([ventricle_v, ventricle_v, ventricle_v - length * 0.7], 1),
                         torch.stack([width, width, 0.012 + 0 * width], 1),
                         torch.stack([length, length, length * 0.35], 1),
                         torch.stack([-tilt, tilt, torch.zeros(c.n)], 1), wobble=0.08)
    c.paint(c.cover(ventricles), c.value(c.tissue("csf"), fine=2), "csf")
    # the falx: a thin dense line in the midline, in front of and behind the ventricles
    top, bottom = cv + av * brain, cv - av * brain
    falx = c.segments(torch.zeros(c.n, 2), torch.stack([top, ventricle_v - length - 0.05], 1),
                      torch.stack([c.uniform(-0.01, 0.01), c.uniform(-0.01, 0.01)], 1),
                      torch.stack([ventricle_v + length + 0.02, bottom], 1), c.uniform(0.003, 0.007, 2))
    c.paint(falx * c.cover(head, brain), c.value(c.uniform(60, 90)), "soft_tissue")
    if c.detail:
        # the head holder: a thin curved shell under the back of the head, in two images of three
        gap, shell = c.uniform(0.02, 0.12, side=True), c.uniform(1.5, 3.5, side=True) / (c.field_mm / 2) / av
        outside, inside = c.covers(head, 1 + gap + shell, 1 + gap)
        lower = torch.sigmoid((cv.view(-1, 1, 1, 1) - av.view(-1, 1, 1, 1) * c.uniform(0.0, 0.4, side=True).view(
            -1, 1, 1, 1) - c.v) / c.pixel)
        holder = (outside - inside).clamp(0, 1) * lower * c.chance(0.67, side=True).float().view(-1, 1, 1, 1)
        c.paint(holder, c.value(c.uniform(100, 600, side=True), fine=10), "table")


def _thorax(c: _Canvas) -> None:
    upper = c.chance(0.35)  # an upper slice: trachea and aortic arch instead of the heart
    body = _trunk(c, (0.8, 0.93), (0.52, 0.66), (0.03, 0.1), c.uniform(-100, -40))
    au, av, cv = body["au"], body["av"], body["cv"]
    scale = au / 0.86
    # lungs: dependent (posterior) parenchyma is denser, the whole is mottled
    lung_u = au.view(-1, 1) * torch.stack([-c.uniform(0.36, 0.44), c.uniform(0.36, 0.44)], 1)
    lung_v = (cv + av * c.uniform(0.0, 0.12)).view(-1, 1) + c.uniform(-0.03, 0.03, 2)
    lung_au = au.view(-1, 1) * c.uniform(0.27, 0.34, 2) * torch.where(upper, 0.85, 1.0).view(-1, 1)
    lung_av = av.view(-1, 1) * c.uniform(0.6, 0.72, 2)
    lungs = c.level(lung_u, lung_v, lung_au, lung_av, c.uniform(-0.25, 0.25, 2), wobble=0.08)
    lung_cover = c.cover(lungs)
    gradient = (cv.view(-1, 1, 1, 1) - c.v) / av.view(-1, 1, 1, 1)  # +1 at the back, -1 at the front
    parenchyma = c.value(c.tissue("lung", 0.5), low=15, mid=25, fine=20, field=2) + 50 * gradient.clamp(-1, 1)
    c.paint(lung_cover, parenchyma, "lung")
    # vessel trees from each hilum, and vessel cross-sections scattered in the lungs
    roots = 3
    hilum_u = (lung_u * 0.55).repeat_interleave(roots, 1)
    hilum_v = lung_v.repeat_interleave(roots, 1) + c.uniform(-0.1, 0.1, 2 * roots)
    outward = torch.where(hilum_u < 0, math.pi, 0.0) + c.uniform(-1.2, 1.2, 2 * roots)
    tree = c.tree(hilum_u, hilum_v, outward, c.uniform(0.08, 0.14, 2 * roots), c.uniform(0.012, 0.022, 2 * roots), 3)
    dots_u = lung_u.repeat_interleave(8, 1) + lung_au.repeat_interleave(8, 1) * c.uniform(-0.9, 0.9, 16)
    dots_v = lung_v.repeat_interleave(8, 1) + lung_av.repeat_interleave(8, 1) * c.uniform(-0.9, 0.9, 16)
    vessels = torch.maximum(c.segments(*tree), c.segments(dots_u, dots_v, dots_u, dots_v, c.uniform(0.004, 0.012, 16)))
    c.paint(vessels * lung_cover, c.value(c.blood() * 0.85, fine=10), "vessel")
    if c.detail:
        _lung_detail(c, lung_u, lung_v, lung_au, lung_av, lung_cover)
    # the heart (lower slices), or trachea and aortic arch (upper slices)
    heart = c.level(au * c.uniform(0.02, 0.14), cv + av * c.uniform(0.05, 0.3), au * c.uniform(0.22, 0.3),
                    av * c.uniform(0.32, 0.45), c.uniform(-0.7, -0.2), wobble=0.06)
    pericardium, myocardium, chambers = c.covers(heart, 1.0, 0.93, c.uniform(0.6, 0.75))
    lower = (~upper).float().view(-1, 1, 1, 1)
    c.paint(pericardium * lower, c.value(c.tissue("fat"), fine=6), "fat")
    c.paint(myocardium * lower, c.value(c.tissue("muscle"), low=4, fine=5), "heart")
    c.paint(chambers * lower * c.enhanced.float().view(-1, 1, 1, 1), c.value(c.blood(), fine=8), "vessel")
    spine_v = body["spine_v"]
    arch = c.level(torch.stack([-c.uniform(0.05, 0.1), c.uniform(0.06, 0.12)], 1) * scale.view(-1, 1),
                   torch.stack([cv + av * c.uniform(0.15, 0.3), spine_v + c.uniform(0.14, 0.2) * scale], 1),
                   c.uniform(0.05, 0.075, 2) * scale.view(-1, 1), c.uniform(0.05, 0.075, 2) * scale.view(-1, 1),
                   0.0, wobble=0.03)
    descending = c.level(c.uniform(0.06, 0.12) * scale, spine_v + c.uniform(0.14, 0.2) * scale,
                         c.uniform(0.05, 0.065) * scale, c.uniform(0.05, 0.065) * scale, 0.0, wobble=0.03)
    aorta = torch.where(upper.view(-1, 1, 1, 1), arch, descending)
    c.paint(c.cover(aorta), c.value(c.blood(), fine=6), "vessel")
    trachea = c.level(c.uniform(-0.02, 0.02), cv + av * c.uniform(0.0, 0.15), c.uniform(0.045, 0.065) * scale,
                      c.uniform(0.04, 0.06) * scale, 0.0, wobble=0.05)
    wall, lumen = c.covers(trachea, 1.0, 0.78)
    c.paint(wall * upper.float().view(-1, 1, 1, 1), c.value(c.tissue("soft_tissue"), fine=5), "soft_tissue")
    c.paint(lumen * upper.float().view(-1, 1, 1, 1), c.value(-1000.0), "air")
    # bones: spine, ribs, sternum, scapulae (upper slices)
    _spine(c, body, scale)
    _ribs(c, body, 6, (0.25, 1.35), 0.85, scale)
    _ribs(c, body, 3, (-1.25, -0.45), 0.85, scale)
    sternum = c.level(c.uniform(-0.01, 0.01), cv + av * (body["inner"] + 0.01), c.uniform(0.045, 0.06) * scale,
                      c.uniform(0.022, 0.03) * scale, 0.0, wobble=0.05)
    c.bone(sternum, 0.35)
    scapulae = c.level(au.view(-1, 1) * torch.stack([-c.uniform(0.6, 0.7), c.uniform(0.6, 0.7)], 1),
                       (cv - av * c.uniform(0.55, 0.65)).view(-1, 1) + c.uniform(-0.03, 0.03, 2),
                       c.uniform(0.13, 0.18, 2) * scale.view(-1, 1), c.uniform(0.018, 0.026, 2) * scale.view(-1, 1),
                       torch.stack([c.uniform(0.3, 0.6), -c.uniform(0.3, 0.6)], 1), wobble=0.05)
    outer, inner = c.covers(scapulae, 1.0, 0.5)
    present = (upper | c.chance(0.3)).float().view(-1, 1, 1, 1)
    c.paint(outer * present, c.tissue("cortical_bone", 0.8).view(-1, 1, 1, 1) + 30 * c.fine, "cortical_bone")
    c.paint(inner * present, c.cancellous(), "cancellous_bone")
    table = _table(c, body)
    if c.arms > 0:
        _arms(c, body, table, forearm=False)


def _lung_detail(c: _Canvas, lung_u: torch.Tensor, lung_v: torch.Tensor, lung_au: torch.Tensor,
                 lung_av: torch.Tensor, lung_cover: torch.Tensor) -> None:
    """Small vessels to the periphery, vessel cross-sections shrinking outwards and bronchi near the hila."""
    mm = c.field_mm / 2
    hilum_u, hilum_v = lung_u * 0.6, lung_v + lung_av * 0.05
    # deeper trees: 3 roots per lung, 4 generations reaching the periphery, 1.5–2.5 mm down to about 0.5 mm
    # radius; a third of the branches leave the slice (not drawn)
    roots = 3
    root_u = hilum_u.repeat_interleave(roots, 1) + c.uniform(-0.02, 0.02, 2 * roots, side=True)
    root_v = hilum_v.repeat_interleave(roots, 1) + c.uniform(-0.06, 0.06, 2 * roots, side=True)
    outward = torch.where(root_u < 0, math.pi, 0.0) + c.uniform(-1.5, 1.5, 2 * roots, side=True)
    x0, y0, x1, y1, radius = c.tree(root_u, root_v, outward, c.uniform(15, 28, 2 * roots, side=True) / mm,
                                    c.uniform(0.8, 1.3, 2 * roots, side=True) / mm, 4, spread=(0.3, 0.65),
                                    side=True, shrink=((0.75, 0.95), (0.7, 0.85)))
    radius = radius * c.chance(0.65, radius.shape[1], side=True).float()
    vessels = c.stamps(x0, y0, x1, y1, radius)
    # cross-sections and short in-plane pieces of vessels, thinner towards the pleura
    k = 120
    radius_frac = torch.sqrt(c.uniform(0, 1, 2 * k, side=True)) * 0.95
    theta = c.uniform(-math.pi, math.pi, 2 * k, side=True)
    side_u, side_v = lung_u.repeat_interleave(k, 1), lung_v.repeat_interleave(k, 1)
    cu = side_u + lung_au.repeat_interleave(k, 1) * radius_frac * torch.cos(theta)
    cv = side_v + lung_av.repeat_interleave(k, 1) * radius_frac * torch.sin(theta)
    away = torch.atan2(cv - hilum_v.repeat_interleave(k, 1), cu - hilum_u.repeat_interleave(k, 1))
    length = c.uniform(0, 8, 2 * k, side=True) / mm * c.chance(0.6, 2 * k, side=True).float()
    radius = (c.uniform(0.35, 1.2, 2 * k, side=True) * (1.3 - radius_frac)) / mm
    pieces = c.stamps(cu, cv, cu + length * torch.cos(away), cv + length * torch.sin(away), radius)
    c.paint(torch.maximum(vessels, pieces) * lung_cover, c.value(c.blood(side=True) * 0.85, fine=10), "vessel")
    # bronchi beside the central vessels: an air lumen in a thin wall
    k = 5
    theta = c.uniform(-math.pi, math.pi, 2 * k, side=True)
    reach = c.uniform(0.1, 0.45, 2 * k, side=True)
    bu = hilum_u.repeat_interleave(k, 1) + lung_au.repeat_interleave(k, 1) * reach * torch.cos(theta)
    bv = hilum_v.repeat_interleave(k, 1) + lung_av.repeat_interleave(k, 1) * reach * torch.sin(theta)
    lumen = c.uniform(1.0, 3.5, 2 * k, side=True) / mm * (1.2 - reach)
    wall = lumen + c.uniform(0.5, 1.0, 2 * k, side=True) / mm
    c.paint(c.stamps(bu, bv, bu, bv, wall) * lung_cover, c.value(c.tissue("soft_tissue", side=True), fine=6),
            "soft_tissue")
    c.paint(c.stamps(bu, bv, bu, bv, lumen) * lung_cover, c.value(-1000.0), "air")


def _abdomen(c: _Canvas) -> None:
    # the cavity: mesenteric fat mottled with collapsed bowel and vessels
    body = _trunk(c, (0.8, 0.95), (0.56, 0.72), (0.05, 0.18), c.uniform(-80, -30), cavity_mottle=25.0)
    au, av, cv, cavity = body["au"], body["av"], body["cv"], body["cavity"]
    scale = au / 0.88
    enhanced = c.enhanced.float()
    spine_v = body["spine_v"]
    # psoas muscles beside the vertebral body
    psoas = c.level(_SIDES * (0.15 * scale).view(-1, 1) * c.uniform(0.9, 1.1, 2),
                    (spine_v + 0.02 * scale).view(-1, 1) + c.uniform(-0.02, 0.02, 2),
                    c.uniform(0.045, 0.07, 2) * scale.view(-1, 1), c.uniform(0.055, 0.08, 2) * scale.view(-1, 1),
                    c.uniform(-0.4, 0.4, 2), wobble=0.05)
    c.paint(c.cover(psoas), c.value(c.tissue("muscle"), low=4, fine=6, field=2), "muscle")
    # liver (patient's right = image left) with its vessels and, sometimes, a lesion
    liver_u, liver_v = -au * c.uniform(0.32, 0.45), cv + av * c.uniform(0.0, 0.2)
    liver_au, liver_av = au * c.uniform(0.36, 0.5), av * c.uniform(0.45, 0.62)
    liver = c.level(liver_u, liver_v, liver_au, liver_av, c.uniform(-0.5, 0.3), wobble=0.1)
    liver_cover = c.cover(liver) * cavity * c.chance(0.9).float().view(-1, 1, 1, 1)
    liver_hu = c.tissue("liver") + enhanced * c.uniform(40, 80)
    c.paint(liver_cover, c.value(liver_hu, low=6, fine=5, organ=5), "liver")
    roots = 3
    tree = c.tree((liver_u + liver_au * 0.45).view(-1, 1).expand(c.n, roots).contiguous(),
                  (liver_v - liver_av * 0.2).view(-1, 1) + c.uniform(-0.05, 0.05, roots),
                  math.pi + c.uniform(-1.3, 1.3, roots), c.uniform(0.1, 0.16, roots), c.uniform(0.012, 0.02, roots), 3)
    vessel_hu = torch.where(c.enhanced, c.uniform(150, 220), liver_hu - c.uniform(15, 30))
    c.paint(c.segments(*tree) * liver_cover, c.value(vessel_hu, fine=5), "vessel")
    if c.detail:
        # smaller portal and hepatic branches and their cross-sections, 0.5–2.5 mm radius
        mm = c.field_mm / 2
        roots = 4
        x0, y0, x1, y1, radius = c.tree((liver_u + liver_au * 0.4).view(-1, 1).expand(c.n, roots).contiguous(),
                                        (liver_v - liver_av * 0.1).view(-1, 1) + c.uniform(-0.1, 0.1, roots, side=True),
                                        math.pi + c.uniform(-1.6, 1.6, roots, side=True),
                                        c.uniform(15, 30, roots, side=True) / mm,
                                        c.uniform(1.2, 2.2, roots, side=True) / mm, 4, side=True,
                                        shrink=((0.7, 0.9), (0.7, 0.85)))
        radius = radius * c.chance(0.6, radius.shape[1], side=True).float()
        k = 24
        du, dv = c.uniform(-0.9, 0.9, k, side=True), c.uniform(-0.9, 0.9, k, side=True)
        du, dv = liver_u.view(-1, 1) + liver_au.view(-1, 1) * du, liver_v.view(-1, 1) + liver_av.view(-1, 1) * dv
        branches = torch.maximum(c.stamps(x0, y0, x1, y1, radius),
                                 c.stamps(du, dv, du, dv, c.uniform(0.6, 2.5, k, side=True) / mm))
        small_hu = torch.where(c.enhanced, c.uniform(140, 210, side=True), liver_hu - c.uniform(10, 25, side=True))
        c.paint(branches * liver_cover, c.value(small_hu, fine=5), "vessel")
    lesion = c.level(liver_u + liver_au * c.uniform(-0.5, 0.3), liver_v + liver_av * c.uniform(-0.5, 0.5),
                     c.uniform(0.02, 0.06), c.uniform(0.02, 0.06), c.uniform(0, math.pi), wobble=0.1)
    c.paint(c.cover(lesion) * liver_cover * c.chance(0.25).float().view(-1, 1, 1, 1),
            c.value(c.uniform(0, 35), fine=4), "soft_tissue")
    gallbladder = c.level(liver_u + liver_au * c.uniform(0.2, 0.5), liver_v - liver_av * c.uniform(0.3, 0.6),
                          c.uniform(0.04, 0.07), c.uniform(0.06, 0.1), c.uniform(-0.5, 0.5), wobble=0.05)
    c.paint(c.cover(gallbladder) * cavity * c.chance(0.3).float().view(-1, 1, 1, 1), c.value(c.tissue("csf"), fine=3),
            "soft_tissue")
    # spleen (image right, posterior)
    spleen = c.level(au * c.uniform(0.5, 0.62), cv - av * c.uniform(0.05, 0.3), au * c.uniform(0.1, 0.16),
                     av * c.uniform(0.25, 0.38), c.uniform(0.2, 0.7), wobble=0.08)
    spleen_hu = c.tissue("spleen") + enhanced * c.uniform(50, 90)
    c.paint(c.cover(spleen) * cavity * c.chance(0.7).float().view(-1, 1, 1, 1),
            c.value(spleen_hu, low=4, fine=5, organ=4),
            "spleen")
    # kidneys with their sinus fat, either side of the spine
    kidney_u = _SIDES * (scale * c.uniform(0.26, 0.34)).view(-1, 1)
    kidney_v = (spine_v + scale * c.uniform(0.05, 0.14)).view(-1, 1) + c.uniform(-0.03, 0.03, 2)
    kidney_angle = _SIDES * c.uniform(0.2, 0.6, 2)
    kidneys = c.level(kidney_u, kidney_v, c.uniform(0.075, 0.1, 2) * scale.view(-1, 1),
                      c.uniform(0.11, 0.15, 2) * scale.view(-1, 1), kidney_angle, wobble=0.05)
    sinus = c.level(kidney_u * 0.85, kidney_v, c.uniform(0.025, 0.04, 2) * scale.view(-1, 1),
                    c.uniform(0.04, 0.06, 2) * scale.view(-1, 1), kidney_angle, wobble=0.1)
    present = c.chance(0.8).float().view(-1, 1, 1, 1)
    kidney_hu = c.tissue("kidney") + enhanced * c.uniform(100, 170)
    kidney_cover = c.cover(kidneys) * present
    c.paint(kidney_cover, c.value(kidney_hu, low=4, fine=5, organ=4), "kidney")
    if c.detail:
        # medullary pyramids, less enhanced than the cortex (corticomedullary phase), between cortex and sinus
        k = 5
        theta = (kidney_angle.repeat_interleave(k, 1) + math.pi / 2 * _SIDES.repeat_interleave(k, 1)
                 + c.uniform(-1.6, 1.6, 2 * k, side=True))
        reach = c.uniform(0.45, 0.6, 2 * k, side=True) * 0.1 * scale.view(-1, 1)
        pu = kidney_u.repeat_interleave(k, 1) * 0.95 + reach * torch.cos(theta)
        pv = kidney_v.repeat_interleave(k, 1) + 1.3 * reach * torch.sin(theta)
        pyramids = c.stamps(pu, pv, pu - 0.4 * reach * torch.cos(theta), pv - 0.4 * reach * torch.sin(theta),
                            c.uniform(2.5, 4.5, 2 * k, side=True) / (c.field_mm / 2))
        c.paint(pyramids * kidney_cover, c.value(kidney_hu - enhanced * c.uniform(50, 110, side=True), fine=5),
                "kidney")
    c.paint(c.cover(sinus) * present, c.value(c.uniform(-90, -30), fine=6), "fat")
    # aorta and inferior vena cava in front of the spine
    aorta = c.level(c.uniform(0.02, 0.07) * scale, spine_v + c.uniform(0.14, 0.18) * scale,
                    c.uniform(0.035, 0.05) * scale, c.uniform(0.035, 0.05) * scale, 0.0, wobble=0.03)
    cava = c.level(-c.uniform(0.08, 0.13) * scale, spine_v + c.uniform(0.16, 0.22) * scale,
                   c.uniform(0.04, 0.055) * scale, c.uniform(0.025, 0.04) * scale, c.uniform(-0.3, 0.3), wobble=0.05)
    c.paint(c.cover(aorta), c.value(c.blood(), fine=5), "vessel")
    c.paint(c.cover(cava), c.value(torch.where(c.enhanced, c.uniform(100, 180), c.tissue("blood")), fine=5), "vessel")
    # stomach and bowel loops: a wall around gas, fluid, mottled content or an air-fluid level
    loops = 9
    for j in range(loops):
        big = j == 0  # the stomach, under the left hemidiaphragm
        cu = au * (c.uniform(0.15, 0.45) if big else c.uniform(-0.55, 0.55))
        cv_loop = cv + av * (c.uniform(0.05, 0.4) if big else c.uniform(-0.15, 0.6))
        radius = c.uniform(0.1, 0.18) if big else c.uniform(0.04, 0.09)
        loop = c.level(cu, cv_loop, radius * c.uniform(0.8, 1.2), radius * c.uniform(0.8, 1.2), c.uniform(0, math.pi),
                       wobble=0.12)
        wall, content = c.covers(loop, 1.0, c.uniform(0.7, 0.85))
        present = (c.chance(0.6 if big else 0.75).float().view(-1, 1, 1, 1)) * cavity
        c.paint(wall * present, c.value(c.tissue("soft_tissue"), fine=5), "bowel")
        kind = c.uniform(0, 1).view(-1, 1, 1, 1)
        gas_level = c.half_plane(cv_loop + radius * c.uniform(-0.4, 0.5))  # gas floats anteriorly (up)
        fluid = c.value(c.uniform(0, 25), fine=5)
        mottled = fluid - 900 * torch.sigmoid((c.mid - c.uniform(0.0, 0.8).view(-1, 1, 1, 1)) * 5)
        level_content = fluid + (-1000 - fluid) * gas_level
        content_hu = torch.where(kind < 0.3, torch.full_like(fluid, -1000.0),
                                 torch.where(kind < 0.55, fluid, torch.where(kind < 0.8, mottled, level_content)))
        c.paint(content * present, content_hu, "bowel")
    _spine(c, body, scale)
    _ribs(c, body, 3, (0.4, 1.0), 0.6, scale)
    _ribs(c, body, 2, (-0.9, -0.5), 0.5, scale)
    table = _table(c, body)
    if c.arms > 0:
        _arms(c, body, table, forearm=True)


def _long_bone(c: _Canvas, cu, cv, radius, cortex, side: bool) -> None:
    """A long-bone shaft: cortical ring around fatty marrow, ``(n, K)`` centres and radii (normalised units)."""
    bone = c.level(cu, cv, radius, radius * c.uniform(0.85, 1.0, cu.shape[1], side=side), 0.0, wobble=0.04,
                   side=side)
    outer, inner = c.covers(bone, 1.0, 1 - cortex)
    c.paint(outer, c.tissue("cortical_bone", 0.8, side=side).view(-1, 1, 1, 1) + 30 * c.fine, "cortical_bone")
    c.paint(inner, c.value(c.tissue("marrow", side=side), fine=8), "marrow")


def _arms(c: _Canvas, body: dict[str, torch.Tensor], table: tuple[torch.Tensor, torch.Tensor], forearm: bool) -> None:
    """Arms resting beside the trunk (probability ``c.arms`` per image; otherwise raised out of the slice).

    Upper arm (thorax): skin, fat, muscle with a fat plane, the humeral shaft. Forearm or
    elbow (abdomen): radius and ulna, or the distal humerus. From the side stream.
    """
    mm = c.field_mm / 2
    present = c.chance(c.arms, side=True).float().view(-1, 1, 1, 1)
    half_u, half_v = c.uniform(36, 52, 2, side=True) / mm, c.uniform(38, 55, 2, side=True) / mm
    gap = c.uniform(-4, 25, 2, side=True) / mm
    centre_u = _SIDES * (body["au"].view(-1, 1) + half_u + gap)
    centre_v = ((body["cv"] + body["av"] * c.uniform(-0.5, -0.1, side=True)).view(-1, 1)
                + c.uniform(-8, 8, 2, side=True) / mm)
    # resting on the table (or a pad on it): not below its curved top surface
    top, curve = table
    floor = top.view(-1, 1) + curve.view(-1, 1) * centre_u ** 2 + half_v + c.uniform(0, 15, 2, side=True) / mm
    centre_v = torch.maximum(centre_v, floor)
    arm = c.level(centre_u, centre_v, half_u, half_v, c.uniform(-0.4, 0.4, 2, side=True), wobble=0.06, side=True)
    fat = c.uniform(0.1, 0.3, side=True)
    skin, subcutaneous, muscle = c.covers(arm, 1.0, 0.97, 1 - fat)
    skin, subcutaneous, muscle = skin * present, subcutaneous * present, muscle * present
    c.paint(skin, c.value(c.tissue("soft_tissue", side=True), fine=5), "skin")
    c.paint(subcutaneous, c.value(c.tissue("fat", side=True), low=6, fine=6, field=1), "fat")
    c.paint(muscle, c.value(c.tissue("muscle", side=True), low=4, fine=6, field=2, organ=4), "muscle")
    # a fat plane between the flexor and extensor muscles
    angle = c.uniform(-0.6, 0.6, 2, side=True)
    reach = (half_u + half_v) / 2
    plane = c.stamps(centre_u - reach * torch.cos(angle), centre_v - reach * torch.sin(angle),
                     centre_u + reach * torch.cos(angle), centre_v + reach * torch.sin(angle),
                     c.uniform(0.5, 1.2, 2, side=True) / mm)
    c.paint(plane * muscle, c.value(c.tissue("fat", side=True), fine=6), "fat")
    # the humeral shaft, or radius and ulna side by side (forearm) one time in two below the elbow
    two = (c.chance(0.5, side=True) if forearm else torch.zeros(c.n, dtype=torch.bool)).view(-1, 1)
    offset_u, offset_v = c.uniform(-8, 8, 2, side=True) / mm, c.uniform(-8, 8, 2, side=True) / mm
    humerus = torch.where(two, 1e-4, c.uniform(9, 13, 2, side=True) / mm) * (present.view(-1, 1) > 0)
    _long_bone(c, centre_u + offset_u, centre_v + offset_v, humerus.clamp_min(1e-4),
               c.uniform(0.25, 0.45, side=True), side=True)
    apart = c.uniform(8, 13, 2, side=True) / mm
    small = torch.where(two, c.uniform(5.5, 8, 2, side=True) / mm, 1e-4) * (present.view(-1, 1) > 0)
    _long_bone(c, torch.cat([centre_u - apart, centre_u + apart], 1), torch.cat([centre_v, centre_v], 1) + 0.0,
               torch.cat([small, small * c.uniform(0.85, 1.1, 2, side=True)], 1).clamp_min(1e-4),
               c.uniform(0.3, 0.5, side=True), side=True)


def _neck_vessels(c: _Canvas, mm: float, trachea_u, trachea_v, distance: tuple[float, float]) -> None:
    """Common carotid arteries and internal jugular veins either side of the trachea."""
    out = _SIDES * c.uniform(*distance, 2) / mm
    carotid = c.level(trachea_u.view(-1, 1) + out, trachea_v.view(-1, 1) - c.uniform(0, 10, 2) / mm,
                      c.uniform(3, 4.5, 2) / mm, c.uniform(3, 4.5, 2) / mm, 0.0, wobble=0.03)
    jugular = c.level(trachea_u.view(-1, 1) + out * 1.35, trachea_v.view(-1, 1) + c.uniform(-4, 6, 2) / mm,
                      c.uniform(4, 8, 2) / mm, c.uniform(3, 6, 2) / mm, c.uniform(-0.6, 0.6, 2), wobble=0.1)
    c.paint(c.cover(jugular), c.value(torch.where(c.enhanced, c.uniform(100, 200), c.tissue("blood")), fine=5),
            "vessel")
    c.paint(c.cover(carotid), c.value(c.blood(), fine=5), "vessel")


def _airway(c: _Canvas, mm: float, u, v, radius_mm: tuple[float, float]) -> None:
    """Trachea (air in a soft-tissue wall) with the oesophagus behind it, slightly to the left."""
    radius = c.uniform(*radius_mm) / mm
    oesophagus = c.level(u + c.uniform(0, 8) / mm, v - radius - c.uniform(5, 9) / mm, c.uniform(6, 10) / mm,
                         c.uniform(4, 7) / mm, c.uniform(-0.3, 0.3), wobble=0.08)
    wall, lumen = c.covers(oesophagus, 1.0, c.uniform(0.0, 0.5))
    c.paint(wall, c.value(c.tissue("muscle"), fine=5), "muscle")
    c.paint(lumen * c.chance(0.4).float().view(-1, 1, 1, 1), c.value(-1000.0), "air")
    trachea = c.level(u, v, radius, radius * c.uniform(0.8, 1.0), 0.0, wobble=0.04)
    wall, lumen = c.covers(trachea, 1.0, 1 - c.uniform(1.5, 3, 1)[:, 0] / mm / radius)
    c.paint(wall, c.value(c.tissue("soft_tissue"), fine=5), "soft_tissue")
    c.paint(lumen, c.value(-1000.0), "air")


def _neck(c: _Canvas) -> None:
    """An axial slice of the neck at the thyroid (C6–C7): a field of about 250 mm."""
    mm = c.field_mm / 2
    body = _trunk(c, (0.55, 0.7), (0.48, 0.6), (0.03, 0.08), c.uniform(-90, -40))
    au, av, cv = body["au"], body["av"], body["cv"]
    # posterior neck muscles, a mass behind the spine; sternocleidomastoids in front of the sides
    posterior = c.level(_SIDES * au.view(-1, 1) * c.uniform(0.25, 0.35, 2), (cv - av * 0.55).view(-1, 1),
                        au.view(-1, 1) * c.uniform(0.3, 0.4, 2), av.view(-1, 1) * c.uniform(0.3, 0.38, 2),
                        c.uniform(-0.4, 0.4, 2), wobble=0.08)
    under_fat = c.cover(body["level"], 1 - body["fat_t"])
    c.paint(c.cover(posterior) * under_fat, c.value(c.tissue("muscle"), low=4, fine=6, field=2), "muscle")
    scm = c.level(_SIDES * au.view(-1, 1) * c.uniform(0.55, 0.7, 2), (cv + av * c.uniform(0.05, 0.3)).view(-1, 1),
                  c.uniform(7, 11, 2) / mm, c.uniform(14, 22, 2) / mm, _SIDES * c.uniform(0.3, 0.8, 2), wobble=0.06)
    c.paint(c.cover(scm) * under_fat, c.value(c.tissue("muscle"), low=4, fine=6, field=2), "muscle")
    # the cervical spine
    spine = dict(body, spine_v=cv - av * c.uniform(0.12, 0.25))
    _spine(c, spine, c.uniform(0.62, 0.75))  # a cervical body of about 9 mm radius
    # airway, oesophagus, thyroid lobes and the strap muscles in front
    trachea_u, trachea_v = c.uniform(-4, 4) / mm, cv + av * c.uniform(0.35, 0.5)
    thyroid = c.level(torch.stack([trachea_u, trachea_u], 1) + _SIDES * c.uniform(12, 18, 2) / mm,
                      trachea_v.view(-1, 1) + c.uniform(-6, 2, 2) / mm, c.uniform(7, 11, 2) / mm,
                      c.uniform(9, 15, 2) / mm, _SIDES * c.uniform(-0.6, -0.1, 2), wobble=0.1)
    thyroid_hu = c.tissue("thyroid") + c.enhanced.float() * c.uniform(40, 100)
    c.paint(c.cover(thyroid), c.value(thyroid_hu, low=5, fine=6), "thyroid")
    straps = c.level(_SIDES * c.uniform(6, 12, 2) / mm, (trachea_v + c.uniform(13, 17) / mm).view(-1, 1),
                     c.uniform(8, 13, 2) / mm, c.uniform(2.5, 4, 2) / mm, _SIDES * c.uniform(0.0, 0.4, 2), wobble=0.05)
    c.paint(c.cover(straps), c.value(c.tissue("muscle"), fine=6), "muscle")
    _airway(c, mm, trachea_u, trachea_v, (7, 10))
    _neck_vessels(c, mm, trachea_u, trachea_v, (22, 28))


def _shoulder(c: _Canvas) -> None:
    """An axial slice at the shoulder joints (T1–T2): a field of about 480 mm."""
    mm = c.field_mm / 2
    body = _trunk(c, (0.8, 0.92), (0.36, 0.46), (0.03, 0.08), c.uniform(-100, -50))
    au, av, cv = body["au"], body["av"], body["cv"]
    # deltoid and trapezius: muscle masses over the shoulders and behind
    muscles = c.level(torch.cat([_SIDES * au.view(-1, 1) * c.uniform(0.7, 0.8, 2),
                                 _SIDES * au.view(-1, 1) * c.uniform(0.25, 0.4, 2)], 1),
                      torch.cat([(cv + av * c.uniform(-0.1, 0.1)).view(-1, 1).expand(c.n, 2),
                                 (cv - av * c.uniform(0.5, 0.65)).view(-1, 1).expand(c.n, 2)], 1),
                      torch.cat([au.view(-1, 1) * c.uniform(0.22, 0.28, 2),
                                 au.view(-1, 1) * c.uniform(0.3, 0.4, 2)], 1),
                      torch.cat([av.view(-1, 1) * c.uniform(0.6, 0.8, 2),
                                 av.view(-1, 1) * c.uniform(0.25, 0.35, 2)], 1),
                      c.uniform(-0.3, 0.3, 4), wobble=0.08)
    under_fat = c.cover(body["level"], 1 - body["fat_t"])
    c.paint(c.cover(muscles) * under_fat, c.value(c.tissue("muscle"), low=4, fine=6, field=2), "muscle")
    # pectoral muscles in front, subscapularis and serratus along the chest wall behind (axillary fat between)
    girdle = c.level(torch.cat([_SIDES * au.view(-1, 1) * c.uniform(0.35, 0.5, 2),
                                _SIDES * au.view(-1, 1) * c.uniform(0.45, 0.6, 2)], 1),
                     torch.cat([(cv + av * c.uniform(0.45, 0.6)).view(-1, 1).expand(c.n, 2),
                                (cv - av * c.uniform(0.2, 0.4)).view(-1, 1).expand(c.n, 2)], 1),
                     torch.cat([au.view(-1, 1) * c.uniform(0.2, 0.28, 2), au.view(-1, 1) * c.uniform(0.14, 0.2, 2)], 1),
                     torch.cat([av.view(-1, 1) * c.uniform(0.15, 0.22, 2), av.view(-1, 1) * c.uniform(0.3, 0.45, 2)],
                               1),
                     torch.cat([_SIDES * c.uniform(0.1, 0.4, 2), _SIDES * c.uniform(-0.6, 0.0, 2)], 1), wobble=0.08)
    c.paint(c.cover(girdle) * under_fat, c.value(c.tissue("muscle"), low=4, fine=6, field=2, organ=4), "muscle")
    # lung apices behind and beside the trachea, in two slices of three
    apex = c.level(_SIDES * au.view(-1, 1) * c.uniform(0.22, 0.3, 2), (cv - av * c.uniform(0.0, 0.2)).view(-1, 1),
                   au.view(-1, 1) * c.uniform(0.1, 0.16, 2), av.view(-1, 1) * c.uniform(0.25, 0.4, 2),
                   c.uniform(-0.4, 0.4, 2), wobble=0.08)
    c.paint(c.cover(apex) * c.chance(0.67).float().view(-1, 1, 1, 1),
            c.value(c.tissue("lung", 0.5), low=15, mid=25, fine=20, field=2), "lung")
    # humeral heads (cancellous in a thin cortex), the glenoid and scapula behind, the clavicles in front
    head_u = _SIDES * au.view(-1, 1) * c.uniform(0.74, 0.82, 2)
    head_v = (cv + av * c.uniform(-0.1, 0.1)).view(-1, 1) + c.uniform(-5, 5, 2) / mm
    head_r = c.uniform(20, 26, 2) / mm
    c.bone(c.level(head_u, head_v, head_r, head_r * c.uniform(0.9, 1.0, 2), 0.0, wobble=0.03), 0.08)
    scapula_u = head_u * c.uniform(0.55, 0.7, 2)
    scapula_v = head_v - head_r * c.uniform(1.0, 1.6, 2)
    scapula = c.level(scapula_u, scapula_v, c.uniform(35, 50, 2) / mm, c.uniform(2, 3.5, 2) / mm,
                      _SIDES * c.uniform(0.3, 0.6, 2), wobble=0.06)
    c.bone(scapula, 0.6)
    clavicle = c.level(_SIDES * au.view(-1, 1) * c.uniform(0.3, 0.55, 2), (cv + av * c.uniform(0.45, 0.65)).view(-1, 1),
                       c.uniform(12, 25, 2) / mm, c.uniform(6, 8, 2) / mm, _SIDES * c.uniform(-0.5, 0.0, 2),
                       wobble=0.05)
    c.bone(clavicle, 0.35)
    # spine, first ribs, airway, oesophagus, great vessels and sometimes the lower thyroid poles
    spine = dict(body, spine_v=cv - av * c.uniform(0.3, 0.4))
    _spine(c, spine, c.uniform(0.5, 0.62))  # T1: about 14 mm radius
    _ribs(c, body, 2, (0.6, 1.2), 0.7, au * 0.6)
    trachea_u, trachea_v = c.uniform(-5, 5) / mm, cv + av * c.uniform(0.05, 0.25)
    thyroid = c.level(torch.stack([trachea_u, trachea_u], 1) + _SIDES * c.uniform(12, 16, 2) / mm,
                      trachea_v.view(-1, 1) + c.uniform(0, 6, 2) / mm, c.uniform(5, 9, 2) / mm,
                      c.uniform(6, 10, 2) / mm, 0.0, wobble=0.1)
    thyroid_hu = c.tissue("thyroid") + c.enhanced.float() * c.uniform(40, 100)
    c.paint(c.cover(thyroid) * c.chance(0.4).float().view(-1, 1, 1, 1), c.value(thyroid_hu, fine=6), "thyroid")
    _airway(c, mm, trachea_u, trachea_v, (8, 11))
    _neck_vessels(c, mm, trachea_u, trachea_v, (20, 30))
    _table(c, body)  # no arms beside it: at this level the humeral heads are the arms


_REGION_DRAW = {"head": _head, "thorax": _thorax, "abdomen": _abdomen, "neck": _neck, "shoulder": _shoulder}
# the unzoomed field's width in mm per region (the scale of mm-sized detail), as clinical scans of each region use
_FIELD_MM = {"head": 240.0, "thorax": 400.0, "abdomen": 400.0, "neck": 250.0, "shoulder": 480.0}


def _region_list(n: int, region: str | Sequence[str] | None) -> list[str]:
    if region is None:
        region = DEFAULT_REGIONS
    if isinstance(region, str):
        region = (region,)
    region = tuple(region)
    unknown = [r for r in region if r not in REGIONS]
    if unknown or not region:
        raise ValueError(f"unknown region {unknown[0] if unknown else region!r}; choose from {list(REGIONS)}")
    return [region[i % len(region)] for i in range(n)]


def _check_field_of_view(field_of_view) -> float | tuple[float, float] | dict:
    """A float in [0.1, 4], a (low, high) pair with 0.1 <= low <= high <= 4, or a region -> either mapping."""
    if isinstance(field_of_view, Mapping):
        unknown = [r for r in field_of_view if r not in REGIONS]
        if unknown:
            raise ValueError(f"field_of_view names unknown region {unknown[0]!r}; choose from {list(REGIONS)}")
        return {r: _check_field_of_view(f) for r, f in field_of_view.items()}
    if isinstance(field_of_view, (int, float)) and not isinstance(field_of_view, bool):
        values = (float(field_of_view),)
    elif isinstance(field_of_view, Sequence) and len(field_of_view) == 2:
        values = tuple(float(f) for f in field_of_view)
    else:
        raise ValueError(f"field_of_view must be a float or a (low, high) pair, got {field_of_view!r}")
    if not all(0.1 <= f <= 4 for f in values) or values[0] > values[-1]:
        raise ValueError(f"field_of_view must lie in [0.1, 4] (low <= high), got {field_of_view!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def anatomy_phantoms(
    n: int,
    size: int,
    generator: torch.Generator | int | None = None,
    region: str | Sequence[str] | None = None,
    *,
    supersample: int = 4,
    return_labels: bool = False,
    field_of_view: float | tuple[float, float] | Mapping[str, float | tuple[float, float]] = 1.0,
    detail: bool = False,
    arms: float = 0.0,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``n`` procedural axial CT slices, ``(n, 1, size, size)`` float32 in [0, 1].

    Parameters
    ----------
    n : int
        Number of images (``>= 0``).
    size : int
        Height = width in pixels (``>= 16``).
    generator : torch.Generator or int, optional
        A CPU ``torch.Generator``, or a seed for one (default: seed 0). The same seed gives
        the same images; the geometry does not depend on ``size``.
    region : str or sequence of str, optional
        ``"head"``, ``"thorax"``, ``"abdomen"``, ``"neck"``, ``"shoulder"`` or a sequence of
        them; item ``i`` is of ``regions[i % len(regions)]``. Default: ``DEFAULT_REGIONS``
        (head, thorax, abdomen) in turn. The regions' images are drawn region by region in
        ``REGIONS`` order, so adding ``"neck"`` or ``"shoulder"`` to a list (with as many
        images of the others) leaves the other regions' images unchanged.
    supersample : int, optional
        Shapes are thresholded on a grid this many times finer and averaged down (partial
        volume); an even number >= 2, default 4.
    return_labels : bool, optional
        Also return ``(n, 1, size, size)`` int64 tissue labels (indices into ``LABELS``).
    field_of_view : float, (float, float) or mapping, optional
        The reconstructed field relative to the region's usual one (head 240 mm, thorax and
        abdomen 400 mm, neck 250 mm, shoulders 480 mm): below 1 a zoomed reconstruction (the
        body larger, cut by the field's edge), above 1 a wider one. A float for every image,
        ``(low, high)`` for one drawn uniformly per image, or a mapping region -> either
        (e.g. ``CLINICAL_FIELDS``; regions not named get 1). Each within [0.1, 4].
        Default 1: the images as they have always been drawn.
    detail : bool, optional
        Draw the detail a pixel below ~1 mm resolves: a trabecular web in cancellous bone,
        small lung vessels to the periphery and bronchi, fat planes between the muscles of
        the wall and fibrous septa in the subcutaneous fat, a thin vertebral cortex, a curved
        table. Default False (the images as they have always been drawn).
    arms : float, optional
        The probability that the arms lie beside the trunk in a thorax or abdomen
        slice (upper arm with the humeral shaft, or forearm and elbow below the ribs);
        otherwise they are raised out of the slice. Default 0.

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        The images, values ``hu_to_unit(HU)`` under ``HU_WINDOW`` = (−1000, 2000) HU; with
        ``return_labels`` also the labels.

    Raises
    ------
    ValueError
        For ``n < 0``, ``size < 16``, an odd or small ``supersample``, an unknown region, a
        field of view outside [0.1, 4] or ``arms`` outside [0, 1].
    TypeError
        For a ``detail`` that is not a bool.

    Notes
    -----
    The zoom, the detail and the arms are drawn from a stream of their own (seeded from the
    block's), so that a seed draws the same anatomy with and without them; with the
    defaults nothing is drawn from it and the images are exactly those of the plain
    generator.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels for anatomy phantoms, got {size}")
    if supersample < 2 or supersample % 2:
        raise ValueError(f"supersample must be an even number >= 2, got {supersample}")
    field_of_view = _check_field_of_view(field_of_view)
    if not isinstance(detail, bool):
        raise TypeError(f"detail must be a bool, got {type(detail).__name__}")
    if isinstance(arms, bool) or not isinstance(arms, (int, float)) or not 0 <= arms <= 1:
        raise ValueError(f"arms must be a probability in [0, 1], got {arms!r}")
    if generator is None or isinstance(generator, int):
        generator = torch.Generator().manual_seed(0 if generator is None else int(generator))
    regions = _region_list(n, region)
    low, high = HU_WINDOW
    images = torch.zeros(n, 1, size, size)
    labels = torch.zeros(n, 1, size, size, dtype=torch.long)
    for name in REGIONS:
        indices = [i for i, r in enumerate(regions) if r == name]
        for start in range(0, len(indices), _BLOCK):
            block = indices[start:start + _BLOCK]
            fov = field_of_view.get(name, 1.0) if isinstance(field_of_view, dict) else field_of_view
            canvas = _Canvas(len(block), size, supersample, generator, fov, _FIELD_MM[name], detail,
                             float(arms))
            _REGION_DRAW[name](canvas)
            images[block] = ((canvas.hu - low) / (high - low)).clamp(0, 1)
            labels[block] = canvas.labels
    return (images, labels) if return_labels else images
