"""RadonOp and FBP against analytic projections, scikit-image and ASTRA (docs/operators.md
quotes the numbers these tests print with ``pytest -s``)."""

import math
import warnings

import numpy as np
import pytest
import torch

from scoreinv.operators import RadonOp, clear_matrix_cache, fbp, least_squares
from scoreinv.operators import system_matrix as system_matrix_module


def supersampled(n, profile, centre=None, sub=8):
    """Render profile(x, y) on an n×n grid of unit pixels, averaging sub×sub samples per pixel.

    x runs along the columns (right), y against the rows (up), both from ``centre`` (index
    coordinates; default the geometric centre (n−1)/2, ours; skimage rotates about n//2)."""
    c = (n - 1) / 2 if centre is None else centre
    o = (np.arange(sub) + 0.5) / sub - 0.5
    x = (np.arange(n)[None, :, None, None] + o[None, None, None, :]) - c
    y = c - (np.arange(n)[:, None, None, None] + o[None, None, :, None])
    return profile(x, y).mean(axis=(2, 3))


def disk(cx, cy, r):
    return lambda x, y: (((x - cx) ** 2 + (y - cy) ** 2) <= r * r).astype(float)


def paraboloid(cx, cy, r):
    return lambda x, y: np.clip(1 - ((x - cx) ** 2 + (y - cy) ** 2) / r**2, 0, None)


def detector_offsets(op, cx, cy):
    """(views, D): s_d − s₀(θ), s₀ = cx cos θ + cy sin θ the projected centre."""
    theta = op.measured_angles.numpy()
    s = np.arange(op.n_detectors) - (op.n_detectors - 1) / 2
    return s[None, :] - (cx * np.cos(theta) + cy * np.sin(theta))[:, None]


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def project(op, image):
    return op(torch.from_numpy(image)[None, None]).numpy()[0, 0]


@pytest.mark.parametrize("projector", ["linear", "strip"])
@pytest.mark.parametrize("centre", [(0.0, 0.0), (7.3, -4.1)], ids=["centred", "off-centre"])
def test_disk_matches_analytic_radon(projector, centre):
    """A disk of radius r projects to 2√(r² − s²): checks the scale (pixel units), the detector
    centring and the angle convention s = x cos θ + y sin θ."""
    n, r = 64, 18.0
    op = RadonOp(23, n, projector=projector)
    cx, cy = centre
    sino = project(op, supersampled(n, disk(cx, cy, r)))
    d = detector_offsets(op, cx, cy)
    analytic = 2 * np.sqrt(np.clip(r * r - d * d, 0, None))
    err = rel(sino, analytic)
    print(f"\n{projector} disk {centre}: rel L2 {err:.4f}")
    assert err < 0.035  # dominated by the √ edges: a half-detector shift gives 0.05, ×1.02 gives 0.034
    # each view integrates to the disk's area, its centroid is the projected centre
    np.testing.assert_allclose(sino.sum(1), math.pi * r * r, rtol=3e-3)
    s = np.arange(op.n_detectors) - (op.n_detectors - 1) / 2
    centroid = (sino * s).sum(1) / sino.sum(1)
    projected_centre = (s[None, :] - d)[:, 0]
    np.testing.assert_allclose(centroid, projected_centre, rtol=0, atol=0.05)
    # a smooth object (no √ edge): (1 − ρ²/r²) projects to (4r/3)(1 − s²/r²)^{3/2}
    sino_smooth = project(op, supersampled(n, paraboloid(cx, cy, r)))
    analytic_smooth = 4 * r / 3 * np.clip(1 - d * d / r**2, 0, None) ** 1.5
    err_smooth = rel(sino_smooth, analytic_smooth)
    print(f"{projector} paraboloid {centre}: rel L2 {err_smooth:.4f}")
    assert err_smooth < 0.005


def test_line_projector_conserves_mass():
    """ASTRA's `line` projector: right scale; its rays along pixel boundaries (θ = 0 here) go to
    one side, a half-pixel centroid shift in that view only (see docs/operators.md)."""
    n, r = 64, 18.0
    op = RadonOp(23, n, projector="line")
    sino = project(op, supersampled(n, disk(0, 0, r)))
    np.testing.assert_allclose(sino.sum(1), math.pi * r * r, rtol=3e-3)
    s = np.arange(op.n_detectors) - (op.n_detectors - 1) / 2
    centroid = (sino * s).sum(1) / sino.sum(1)
    assert np.abs(centroid[1:]).max() < 0.05 and abs(abs(centroid[0]) - 0.5) < 0.05


def test_agrees_with_skimage_radon_after_half_pixel_shift():
    """skimage rotates about pixel N//2, we about the geometric centre (N−1)/2: rendering the
    same objects about each centre (the half-pixel window shift), the sinograms agree."""
    from skimage.transform import radon

    n = 64  # D = ceil(64√2) = 91 is odd: skimage's detector centre D//2 is ours too
    op = RadonOp(180, n)
    degrees = np.degrees(op.measured_angles.numpy())
    objects = [(disk, 8, -5, 14, 1.0), (disk, -10, 6, 9, 0.5)]

    def phantom(centre, kind):
        return sum(w * supersampled(n, kind(cx, cy, r), centre=centre, sub=4)
                   for _, cx, cy, r, w in objects)

    for kind, tol in ((disk, 0.02), (paraboloid, 0.005)):
        ours = project(op, phantom(None, kind))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = radon(phantom(n // 2, kind), theta=degrees, circle=False).T
            unshifted = radon(phantom(None, kind), theta=degrees, circle=False).T
        assert theirs.shape == ours.shape
        print(f"\nskimage {kind.__name__}: shifted {rel(ours, theirs):.4f}, "
              f"unshifted {rel(ours, unshifted):.4f}")
        assert rel(ours, theirs) < tol
        assert rel(ours, unshifted) > 0.04  # the shift matters


def test_measured_views_are_exact_rows_of_full_transform():
    op = RadonOp(6, 16, full_views=24)
    assert op.n_detectors == math.ceil(16 * math.sqrt(2)) == 23
    assert op.measured_views.tolist() == [0, 4, 8, 12, 16, 20]
    torch.testing.assert_close(op.measured_angles, torch.arange(6, dtype=torch.float64) * math.pi / 6)
    assert torch.equal(op.full_angles[op.measured_views], op.measured_angles)
    x = torch.rand(3, 1, 16, 16)
    full = op.transform(x)
    assert full.shape == (3, 1, 24, 23)
    assert torch.equal(full[:, :, op.measured_views], op(x))
    assert torch.equal(op.subsample(full), op(x))
    assert torch.equal(op.mask[0, :, 0].nonzero().flatten(), op.measured_views)
    # embed = adjoint of subsample; forward adjoint = full adjoint of the embedded sinogram
    y = torch.rand(3, *op.out_shape, dtype=torch.float64)
    torch.testing.assert_close(op.adjoint(y), op.transform_adjoint(op.embed(y)))
    assert op.transform(x.double()).dtype == torch.float64


def test_argument_errors():
    with pytest.raises(ValueError, match="multiple of n_views"):
        RadonOp(23, 64, full_views=100)
    with pytest.raises(ValueError, match="projector"):
        RadonOp(23, 64, projector="cuda")
    with pytest.raises(ValueError, match="n_views"):
        RadonOp(0, 64)
    with pytest.raises(ValueError, match="filter"):
        RadonOp(4, 8).pinv(torch.zeros(1, 1, 4, 12), filter="butterworth")
    with pytest.raises(ValueError, match="unknown FBP filter"):
        RadonOp(4, fbp_filter="butterworth")


def test_gradcheck_forward_adjoint_and_fbp():
    op = RadonOp(4, 8)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, *op.out_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradgradcheck(op, (x,))
    assert torch.autograd.gradcheck(op.adjoint, (y,))
    assert torch.autograd.gradcheck(op.pinv, (y,))
    # the backward of the forward is the adjoint
    (grad,) = torch.autograd.grad((op(x) * y).sum(), x)
    torch.testing.assert_close(grad, op.adjoint(y.detach()))


def test_half_precision_input_keeps_its_dtype():
    op = RadonOp(4, 8)
    x = torch.rand(1, 1, 8, 8)
    out = op(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), op(x), rtol=2e-2, atol=5e-2)


def test_fbp_scale_on_analytic_disk():
    """FBP of an exact 180-view disk sinogram: 1 inside, 0 outside."""
    n, r, cx, cy = 64, 18.0, 5.0, -3.0
    op = RadonOp(180, n)
    d = detector_offsets(op, cx, cy)
    sino = torch.from_numpy(2 * np.sqrt(np.clip(r * r - d * d, 0, None)))[None, None]
    rec = op.pinv(sino)[0, 0].numpy()
    inside = supersampled(n, disk(cx, cy, r - 4), sub=2) == 1
    outside = supersampled(n, disk(cx, cy, r + 4), sub=2) == 0
    print(f"\nFBP disk: inside mean {rec[inside].mean():.4f}, outside mean {rec[outside].mean():.5f}")
    assert rec[inside].mean() == pytest.approx(1.0, abs=0.005)
    assert np.abs(rec[inside] - 1).max() < 0.05
    assert abs(rec[outside].mean()) < 0.005


def test_fbp_shepp_logan_matches_astra_and_beats_skimage():
    """128² Shepp–Logan, 180 views, ram-lak: our torch FBP vs ASTRA's CPU FBP on the same
    sinogram and skimage's iradon on its own radon."""
    import astra
    from skimage.data import shepp_logan_phantom
    from skimage.metrics import peak_signal_noise_ratio
    from skimage.transform import iradon, radon, resize

    n = 128
    phantom = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)
    op = RadonOp(180, n)
    sino = op(torch.from_numpy(phantom)[None, None])
    ours = op.pinv(sino)[0, 0].numpy()

    vol = astra.create_vol_geom(n, n)
    geom = astra.create_proj_geom("parallel", 1.0, op.n_detectors, op.measured_angles.numpy())
    pid = astra.create_projector("linear", geom, vol)
    sid = astra.data2d.create("-sino", geom, sino[0, 0].numpy())
    rid = astra.data2d.create("-vol", vol)
    cfg = astra.astra_dict("FBP")
    cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid)
    aid = astra.algorithm.create(cfg)
    try:
        astra.algorithm.run(aid)
        theirs_astra = astra.data2d.get(rid)
    finally:
        astra.algorithm.delete(aid)
        astra.data2d.delete([sid, rid])
        astra.projector.delete(pid)

    degrees = np.degrees(op.measured_angles.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_skimage = iradon(radon(phantom, theta=degrees, circle=False), theta=degrees,
                                circle=False, filter_name="ramp")

    def psnr(img):
        return peak_signal_noise_ratio(phantom, img, data_range=1.0)

    p_ours, p_astra, p_skimage = psnr(ours), psnr(theirs_astra), psnr(theirs_skimage)
    print(f"\nFBP Shepp-Logan 128², 180 views: ours {p_ours:.2f} dB, ASTRA {p_astra:.2f} dB, "
          f"skimage {p_skimage:.2f} dB; ours vs ASTRA rel {rel(ours, theirs_astra):.2e}")
    assert p_ours > max(p_astra, p_skimage) - 1.0
    assert rel(ours, theirs_astra) < 1e-3  # same geometry, same ramp: the same reconstruction
    # the other windows trade resolution for noise: less sharp, so lower PSNR on a clean phantom
    for name in ("shepp-logan", "cosine", "hann"):
        assert 20 < psnr(op.pinv(sino, filter=name)[0, 0].numpy()) < p_ours


def test_fbp_function_dispatch():
    op = RadonOp(8, 16, full_views=24)
    x = torch.rand(2, 1, 16, 16)
    y = op(x)
    torch.testing.assert_close(fbp(y, op), op.pinv(y))
    torch.testing.assert_close(fbp(y, op.measured_angles, image_size=16), op.pinv(y))
    full = op.transform(x)
    torch.testing.assert_close(fbp(full, op, filter="hann"), op.inverse_transform(full, filter="hann"))
    with pytest.raises(ValueError, match="image_size"):
        fbp(y, op.measured_angles)
    unsized = RadonOp(8, full_views=24)  # sized by the sinogram's width
    torch.testing.assert_close(fbp(y, unsized), op.pinv(y))
    torch.testing.assert_close(fbp(full, unsized, filter="hann"), op.inverse_transform(full, filter="hann"))
    # the full-view FBP inverts T better than the 8-view one inverts A
    assert float((op.inverse_transform(full) - x).norm()) < float((op.pinv(y) - x).norm())


def test_least_squares_improves_on_fbp():
    op = RadonOp(23, 32)
    x = torch.from_numpy(supersampled(32, disk(3, -2, 10), sub=4)).float()[None, None]
    y = op(x)
    x_fbp = op.pinv(y)
    x_ls = least_squares(op, y, x0=x_fbp, iterations=30)
    assert float((op(x_ls) - y).norm()) < 0.1 * float((op(x_fbp) - y).norm())
    assert float((x_ls - x).norm()) < float((x_fbp - x).norm())


def test_disk_cache_round_trip(tmp_path):
    op = RadonOp(5, 12, cache_dir=tmp_path)
    x = torch.rand(1, 1, 12, 12)
    y = op(x)
    files = list(tmp_path.glob("radon_*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    clear_matrix_cache()
    calls = []
    original = system_matrix_module._astra_matrix

    def counting(geometry):
        calls.append(geometry)
        return original(geometry)

    system_matrix_module._astra_matrix = counting
    try:
        assert torch.equal(RadonOp(5, 12, cache_dir=tmp_path)(x), y)
        assert calls == []  # read from disk, not rebuilt
        files[0].write_bytes(b"not a matrix")
        clear_matrix_cache()
        with pytest.warns(UserWarning, match="unreadable"):
            assert torch.equal(RadonOp(5, 12, cache_dir=tmp_path)(x), y)
        assert len(calls) == 1  # rebuilt, and rewritten
        clear_matrix_cache()
        assert torch.equal(RadonOp(5, 12, cache_dir=tmp_path)(x), y) and len(calls) == 1
    finally:
        system_matrix_module._astra_matrix = original


def test_pickle_carries_geometry_not_matrices():
    import pickle

    op = RadonOp(5, 12, noise_std=0.1)
    op(torch.rand(2, 1, 12, 12))
    assert len(pickle.dumps(op)) < 20_000  # no system matrix inside (same values: test_operators)


def test_full_view_fbp_of_zero_filled_sinogram_is_scaled_measured_fbp():
    """T⁻¹(embed(y)) weights each measured view by π/full_views instead of π/n_views: it is
    (n_views/full_views)·pinv(y), a pitfall for residual-form consistency steps (docs)."""
    op = RadonOp(6, 16, full_views=24)
    y = op(torch.rand(2, 1, 16, 16, dtype=torch.float64))
    torch.testing.assert_close(op.inverse_transform(op.embed(y)), op.pinv(y) * 6 / 24)


@pytest.mark.parametrize("window", ["ram-lak", "hann"])
def test_inverse_transform_measured_equals_the_zero_filled_full_view_fbp(window):
    """The cheap override used by the consistency step is the literal T⁻¹ Λᵀ r, with the
    operator's FBP window."""
    op = RadonOp(6, 16, full_views=24, fbp_filter=window)
    r = op(torch.rand(3, 1, 16, 16, dtype=torch.float64))
    torch.testing.assert_close(op.inverse_transform_measured(r), op.inverse_transform(op.embed(r)))
    torch.testing.assert_close(op.inverse_transform_measured(r),
                               op.inverse_transform(op.embed(r), filter=window))
    torch.testing.assert_close(op.pinv(r), fbp(r, op.measured_angles, image_size=16, filter=window))


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("damping", [1.0, 1e4, 1e6])
def test_damped_least_squares_stays_converged(dtype, tolerance, damping):
    """CGLS stops per item at rounding level: large damping once diverged to 1e8 / NaN."""
    op = RadonOp(8, 16)
    r = op(torch.rand(2, 1, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    matrix = op(torch.eye(256, dtype=torch.float64).reshape(256, 1, 16, 16)).reshape(256, -1).T
    reference = torch.linalg.solve(matrix.T @ matrix + damping * torch.eye(256, dtype=torch.float64),
                                   matrix.T @ r.reshape(2, -1).T).T
    estimate = least_squares(op, r.to(dtype), iterations=100, damping=damping).double().reshape(2, -1)
    assert ((estimate - reference).norm() / reference.norm()).item() < tolerance
