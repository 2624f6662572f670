"""The CT operators step by step on tiny geometries (4×4 to 16×16 images, a few views): the
system matrices and their cache, the FBP filter and quadrature weights, RadonOp and FanBeamOp
options, configurations and refusals, value by value (every message in full), so that a changed
constant, comparison or message in these modules fails a test; well under a second each.
"""

import hashlib
import importlib
import math
import re

import numpy as np
import pytest
import torch

import scoreinv.operators.system_matrix as sm
from scoreinv.operators import MaskOp, RadonOp, fbp
from scoreinv.operators.fanbeam import FanBeamOp, FanBeamSpec, fan_detectors
from scoreinv.operators.radon import (RadonSpec, default_detectors, default_full_views, image_size_for_detectors)

fbp_module = importlib.import_module("scoreinv.operators.fbp")  # (the package's ``fbp`` is the function)


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Each test builds its system matrices and filter responses itself (both are cached per process)."""
    sm.clear_matrix_cache()
    fbp_module._filter_cache.clear()
    yield
    sm.clear_matrix_cache()


def raises_exactly(message: str, error=ValueError):
    """pytest.raises for exactly this message (not a part of it)."""
    return pytest.raises(error, match="^" + re.escape(message) + "$")


# --- RadonOp --------------------------------------------------------------------------------------

def test_radon_defaults():
    assert default_full_views(23) == 184 and default_full_views(180) == 180 and default_full_views(200) == 200
    assert default_full_views(1) == 180 and default_full_views(7) == 182
    assert default_detectors(8) == 12 and default_detectors(16) == 23
    assert default_detectors(8, 2.0) == 6 and default_detectors(10, 0.5) == 29
    assert image_size_for_detectors(12) == 8 and image_size_for_detectors(23) == 16
    assert image_size_for_detectors(6, 2.0) == 8 and image_size_for_detectors(29, 0.5) == 10
    with raises_exactly("a sinogram with 93 detectors fits no N×N image with the default ceil(N·√2/τ) detectors "
                        "(65×65 images give 92, 66×66 give 94): pass image_size= (and detectors=) to RadonOp"):
        image_size_for_detectors(93)
    with raises_exactly("a sinogram with 1 detectors fits no N×N image with the default ceil(N·√2/τ) detectors: "
                        "pass image_size= (and detectors=) to RadonOp"):
        image_size_for_detectors(1)
    for bad in (0, True, 2.0):
        with raises_exactly(f"RadonOp: n_views must be a positive integer, got {bad!r}"):
            default_full_views(bad)


def test_radon_constructor_refusals():
    with raises_exactly("RadonOp: give the number of views (RadonOp(23)) or angles=..., exactly one"):
        RadonOp()
    with raises_exactly("RadonOp: give the number of views (RadonOp(23)) or angles=..., exactly one"):
        RadonOp(4, angles=[0.0])
    with raises_exactly("RadonOp: detectors= and n_detectors= are the same option; give one"):
        RadonOp(4, detectors=5, n_detectors=5)
    with raises_exactly("RadonOp: full_views needs views equally spaced over [0, π) (n_views=); "
                        "these angles have no full-view transform"):
        RadonOp(angles=[0.0, 0.3], full_views=4)
    for bad in (0, -1.0, math.inf, True, "1"):
        with raises_exactly(f"RadonOp: detector_spacing must be a positive number (pixel units), got {bad!r}"):
            RadonOp(4, detector_spacing=bad)
    with raises_exactly("RadonOp: full_views (6) must be a multiple of n_views (4) so that the measured views "
                        "are a subset of the full ones"):
        RadonOp(4, full_views=6)
    with raises_exactly("RadonOp: image_size must be a positive integer, got 0"):
        RadonOp(4, 0)
    with raises_exactly("RadonOp: detectors must be a positive integer, got 0"):
        RadonOp(4, detectors=0)
    with raises_exactly("RadonOp: full_views must be a positive integer, got 0"):
        RadonOp(4, full_views=0)


def test_radon_views_and_angles():
    op = RadonOp(4, 8, full_views=12)
    assert op.full_views == 12 and op.measured_views.tolist() == [0, 3, 6, 9]
    assert torch.allclose(op.measured_angles, torch.arange(4, dtype=torch.float64) * math.pi / 4, atol=0, rtol=0)
    assert op.mask.shape == (1, 12, 12) and op.mask[0, :, 0].tolist() == [1, 0, 0] * 4
    assert op.full_shape == (1, 12, 12) and op.out_shape == (1, 4, 12) and op.detector_spacing == 1.0
    # even angles within 1e-6 are the n_views operator; others are a limited arc without T
    even = RadonOp(angles=np.arange(4) * math.pi / 4 + 5e-7, image_size=8)
    assert even.has_full_transform and even.full_views == 180 and even.config() == RadonOp(4, 8).config()
    arc = RadonOp(angles=[0.0, 0.5, 1.0], image_size=8)
    assert not arc.has_full_transform and arc.full_views is None and arc.measured_views is None
    assert arc.capabilities == frozenset({"line-integrals", "coarse-view"})
    assert op.capabilities == frozenset({"full-transform", "line-integrals", "coarse-view"})
    assert op.capability_note == ""
    note = ("its 3 angles do not fill [0, π) evenly (a limited or irregular arc), so it has no full-view "
            "transform T; method='decomposed' or 'guidance' need only A and Aᵀ")
    assert arc.capability_note == note
    for call in (lambda: arc.full_shape, lambda: arc.transform(torch.zeros(1, 1, 8, 8)),
                 lambda: arc._inverse_transform_measured(torch.zeros(1, 1, 3, 12)),
                 lambda: arc._subsample(torch.zeros(1, 1, 3, 12)), lambda: arc._embed(torch.zeros(1, 1, 3, 12)),
                 lambda: arc._bind_full((1, 4, 12)), lambda: arc._matrix("full")):
        with raises_exactly("RadonOp: " + note):
            call()
    assert arc.unmeasured_arc == pytest.approx(math.pi - 1.0)
    assert op.unmeasured_arc == pytest.approx(math.pi / 4)


def test_radon_transform_adjoint_subsample_and_embed_are_exact():
    op = RadonOp(2, 8, full_views=4)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z = torch.rand(2, 1, 4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    full = op.transform(x)
    assert full.shape == (2, 1, 4, 12)
    lhs = (full * z).sum()
    rhs = (x * op.transform_adjoint(z)).sum()
    assert float(abs(lhs - rhs)) < 1e-10 * float(abs(lhs))
    assert torch.equal(op.subsample(full), full[:, :, [0, 2]]) and torch.allclose(op.subsample(full), op(x))
    embedded = op.embed(op(x))
    assert torch.equal(embedded[:, :, [0, 2]], op(x)) and torch.equal(embedded[:, :, [1, 3]], torch.zeros(2, 1, 2, 12))
    # full views 1 and 3 are the measured views of the operator turned by π/4
    turned = RadonOp(angles=[math.pi / 4, 3 * math.pi / 4], image_size=8)
    assert torch.allclose(full[:, :, [1, 3]], turned(x), atol=1e-6)
    with raises_exactly("RadonOp's full sinograms have shape (1, 4, D), not (1, 3, 12)"):
        op._bind_full((1, 3, 12))
    assert op._bind_full((1, 4, 12)) is op


def test_radon_inverse_transform_measured_is_the_scaled_fbp():
    op = RadonOp(2, 8, full_views=4)
    y = torch.rand(1, 1, 2, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(op.inverse_transform_measured(y), op.pinv(y) * 0.5, rtol=0, atol=0)
    assert torch.allclose(op.inverse_transform(op.embed(y)), op.pinv(y) * 0.5, atol=1e-12)


def test_radon_options_repr_and_spec():
    op = RadonOp(4, 8, fbp_filter="hann", detector_spacing=0.5, noise_std=0.5)
    assert repr(op) == ("RadonOp(n_views=4, image_size=8, n_detectors=23, detector_spacing=0.5, full_views=180, "
                        "projector='linear', noise=GaussianNoise(std=0.5), fbp_filter='hann')")
    assert repr(RadonOp(4)) == ("RadonOp(n_views=4, image_size=None, n_detectors=None, full_views=180, "
                                "projector='linear', noise=None)")
    arc = RadonOp(angles=[0.25, 1.0, 0.5], image_size=8)
    assert repr(arc) == ("RadonOp(angles=[3 angles in 0.25…1], image_size=8, n_detectors=12, full_views=None, "
                         "projector='linear', noise=None)")
    with raises_exactly("operator 'radon' works on 1-channel images, the model has 3 channels"):
        RadonSpec().build(8, 3)
    built = RadonSpec(views=4, detectors=9, detector_spacing=2.0, noise_std=0.5).build(8, 1)
    assert (built.n_views, built.image_size, built.n_detectors, built.detector_spacing, built.noise.std) == \
        (4, 8, 9, 2.0, 0.5)
    limited = RadonSpec(views=4, arc=2.0, detectors=9, detector_spacing=2.0, noise_std=0.5).build(8, 1)
    assert (limited.n_views, limited.image_size, limited.n_detectors, limited.detector_spacing, limited.noise.std) == \
        (4, 8, 9, 2.0, 0.5)
    assert limited.measured_angles.tolist() == [0.0, 0.5, 1.0, 1.5]
    assert RadonSpec(views=4).build(8, 1).detector_spacing == 1.0


# --- FBP ------------------------------------------------------------------------------------------

def test_filter_names():
    for alias, name in [("ramp", "ram-lak"), ("RAMLAK", "ram-lak"), ("ram_lak", "ram-lak"), ("Shepp_Logan", "shepp-logan"),
                        ("shepplogan", "shepp-logan"), ("hanning", "hann"), ("cosine", "cosine")]:
        assert fbp_module.normalise_filter(alias) == name
    with raises_exactly("unknown FBP filter 'box'; expected one of ram-lak, shepp-logan, cosine, hann"):
        fbp_module.normalise_filter("box")


@pytest.mark.parametrize("detectors,padded", [(8, 64), (32, 64), (33, 128), (64, 128), (65, 256)])
def test_ramp_filter_is_the_band_limited_kernel_and_its_windows(detectors, padded):
    size, response = fbp_module.ramp_filter(detectors)
    assert size == padded and response.dtype == torch.float64 and response.shape == (padded // 2 + 1,)
    kernel = np.fft.irfft(response.numpy(), n=padded)
    n = np.arange(1, 8)
    expected = np.where(n % 2 == 1, -1.0 / (np.pi * n) ** 2, 0.0)
    np.testing.assert_allclose(kernel[0], 0.25, atol=1e-15)
    np.testing.assert_allclose(kernel[1:8], expected, atol=1e-15)
    np.testing.assert_allclose(kernel[-7:][::-1], expected, atol=1e-15)
    f = np.arange(padded // 2 + 1) / padded
    for name, window in [("shepp-logan", np.sinc(f)), ("cosine", np.cos(np.pi * f)),
                         ("hann", 0.5 * (1 + np.cos(2 * np.pi * f)))]:
        size, windowed = fbp_module.ramp_filter(detectors, name)
        assert size == padded
        np.testing.assert_allclose(windowed.numpy(), response.numpy() * window, rtol=1e-13, atol=1e-16)
    assert fbp_module.ramp_filter(detectors, "ramp")[1] is response  # cached per (length, window)


def test_filter_sinogram_of_integers_and_half_precision():
    row = torch.zeros(1, 1, 1, 8, dtype=torch.float64)
    row[..., 3] = 1
    filtered = fbp_module.filter_sinogram(row, "ram-lak")
    expected = [-1 / (9 * math.pi**2), 0, -1 / math.pi**2, 0.25, -1 / math.pi**2, 0, -1 / (9 * math.pi**2), 0]
    np.testing.assert_allclose(filtered.reshape(-1).numpy(), expected, atol=1e-15)
    as_int = fbp_module.filter_sinogram(row.long(), "ram-lak")
    assert as_int.dtype == torch.float32 and torch.allclose(as_int.double(), filtered, atol=1e-7)


def test_view_weights():
    assert fbp_module.view_weights([0.3]) == math.pi
    assert fbp_module.view_weights(np.arange(4) * math.pi / 4) == math.pi / 4
    assert fbp_module.view_weights(np.arange(4) * 0.5) == 0.5                     # a limited arc: its step
    assert fbp_module.view_weights(np.arange(8) * math.pi / 4) == math.pi / 8     # [0, 2π): half the step
    assert fbp_module.view_weights([0.2, 0.0, 0.1]) == pytest.approx(0.1)         # sorted, then even
    irregular = fbp_module.view_weights([0.0, 0.5, 0.2, 1.0])
    np.testing.assert_allclose(irregular.numpy(), [0.2, 0.4, 0.25, 0.5], rtol=1e-15)
    wide = fbp_module.view_weights([0.0, 2.0, 3.0, 5.0])                           # the gaps sum past π
    raw = np.array([2.0, 1.5, 1.5, 2.0])
    np.testing.assert_allclose(wide.numpy(), raw * math.pi / raw.sum(), rtol=1e-15)
    same = fbp_module.view_weights([0.5, 0.5, 1.0])                                # a zero gap: not even
    np.testing.assert_allclose(same.numpy(), [0.0, 0.25, 0.5], atol=1e-15)


def test_fbp_of_angles_equals_the_operator_pinv_and_refusals():
    op = RadonOp(angles=[0.0, 0.4, 1.1], image_size=8, detector_spacing=1.5)
    y = torch.rand(2, 1, 3, op.n_detectors, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x = op.pinv(y)
    # by hand: back-project the filtered rows weighted by each view's gap (τ cancels: see the disk test)
    filtered = fbp_module.filter_sinogram(y, "ram-lak")
    weights = fbp_module.view_weights([0.0, 0.4, 1.1])
    assert torch.allclose(x, op.adjoint(filtered * weights[:, None]), atol=1e-12)
    with raises_exactly("fbp: image_size is required when angles are given"):
        fbp(y, [0.0, 0.4, 1.1])
    with raises_exactly("fbp expects a sinogram of shape (B, 1, 3, D), got (3, 4)"):
        fbp(torch.zeros(3, 4), [0.0, 0.4, 1.1], image_size=8)
    with raises_exactly("fbp expects a RadonOp or angles, got the operator MaskOp"):
        fbp(y, MaskOp(np.ones((2, 2))))
    even = RadonOp(4, 8)
    y4 = torch.rand(1, 1, 4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    by_angles = fbp(y4, even.measured_angles, image_size=8)
    assert torch.allclose(by_angles, even.pinv(y4), atol=1e-12)
    assert torch.allclose(by_angles, even.adjoint(fbp_module.filter_sinogram(y4, "ram-lak")) * math.pi / 4, atol=1e-12)
    hann = fbp(y4, even.measured_angles, image_size=8, filter="hann", projector="strip")
    assert torch.allclose(hann, even.with_options(projector="strip").pinv(y4, filter="hann"), atol=1e-12)
    assert fbp(y4.float(), even.measured_angles, image_size=8).dtype == torch.float32
    full = torch.rand(1, 1, even.full_views, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert torch.equal(fbp(full, even, filter="cosine"), even.inverse_transform(full, filter="cosine"))
    assert torch.equal(fbp(y4, even), even.pinv(y4))
    assert torch.equal(fbp(y4, even, filter="hann"), even.pinv(y4, filter="hann"))
    assert not torch.equal(fbp(y4, even, filter="hann"), fbp(y4, even))
    with raises_exactly("fbp expects a sinogram of shape (B, 1, 2, D), got ()"):
        fbp([1.0, 2.0], [0.0, 1.0], image_size=8)
    with pytest.raises(ValueError, match=r"^fbp expects shape \(B, 1, 4, 12\), got \(1, 2, 4, 12\)"):
        fbp(torch.zeros(1, 2, 4, 12), even.measured_angles, image_size=8)


def test_fbp_of_angles_uses_the_disk_cache(tmp_path):
    sm.clear_matrix_cache()
    y = torch.rand(1, 1, 3, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    fbp(y, [0.0, 0.4, 1.1], image_size=8, cache_dir=tmp_path)
    geometry = sm.Geometry(8, 12, (0.0, 0.4, 1.1), "linear")
    assert [p.name for p in tmp_path.iterdir()] == [f"radon_{geometry.key()}.pt"]


# --- system matrices ------------------------------------------------------------------------------

def test_geometry_key_is_the_documented_hash():
    import astra

    parallel = sm.Geometry(8, 12, (0.0, 0.5), "linear")
    h = hashlib.sha256(f"v1|astra {astra.__version__}|linear|8|12|".encode())
    h.update(np.array([0.0, 0.5]).tobytes())
    assert parallel.key() == h.hexdigest()[:32] and not parallel.is_fan and parallel.n_angles == 2
    fan = sm.Geometry(8, 12, (0.0, 0.5), "line_fanflat", 1.5, 20.0, 5.0)
    h = hashlib.sha256(f"v1|astra {astra.__version__}|line_fanflat|8|12|1.5|20.0|5.0|".encode())
    h.update(np.array([0.0, 0.5]).tobytes())
    assert fan.key() == h.hexdigest()[:32] and fan.is_fan
    pitched = sm.Geometry(8, 12, (0.0, 0.5), "linear", 2.0)
    h = hashlib.sha256(f"v1|astra {astra.__version__}|linear|8|12|2.0|None|None|".encode())
    h.update(np.array([0.0, 0.5]).tobytes())
    assert pitched.key() == h.hexdigest()[:32]
    volume, projection = fan.astra_geometries()
    assert (volume["GridRowCount"], volume["GridColCount"]) == (8, 8)
    assert projection["type"] == "fanflat" and projection["DetectorCount"] == 12
    assert (projection["DetectorWidth"], projection["DistanceOriginSource"], projection["DistanceOriginDetector"]) == \
        (1.5, 20.0, 5.0)
    volume, projection = pitched.astra_geometries()
    assert projection["type"] == "parallel" and projection["DetectorWidth"] == 2.0
    np.testing.assert_array_equal(projection["ProjectionAngles"], [0.0, 0.5])


def test_system_matrix_parts_copies_and_exact_transpose():
    sm.clear_matrix_cache()
    geometry = sm.Geometry(8, 12, (0.0, 0.5, 1.0), "linear")
    matrix = sm.system_matrix(geometry, None)
    assert matrix.shape == (36, 64) and sm.system_matrix(geometry, None) is matrix
    parts = matrix.tensors()
    assert list(parts) == ["crow", "col", "val", "t_crow", "t_col", "t_val"]
    assert [parts[name].dtype for name in parts] == [torch.int32, torch.int32, torch.float32] * 2
    assert matrix.nnz == parts["val"].numel() == parts["t_val"].numel() > 0
    a, a_t = matrix.get(torch.device("cpu"), torch.float64)
    assert matrix.get("cpu", torch.float64)[0] is a and a.dtype == torch.float64 and a.shape == (36, 64)
    assert a_t.shape == (64, 36) and torch.equal(a.to_dense().T, a_t.to_dense())
    reference = sm._astra_matrix(geometry).toarray()
    np.testing.assert_allclose(a.to_dense().numpy(), reference.astype(np.float32), rtol=0, atol=0)


def test_memory_cache_keeps_the_eight_most_recent_geometries():
    sm.clear_matrix_cache()
    geometries = [sm.Geometry(4, 6, (0.1 * k,), "linear") for k in range(9)]
    first = sm.system_matrix(geometries[0], None)
    for geometry in geometries[1:8]:
        sm.system_matrix(geometry, None)
    assert sm.system_matrix(geometries[0], None) is first       # used again: now the most recent
    sm.system_matrix(geometries[8], None)                        # evicts geometries[1]
    assert list(sm._memory_cache) == [g.key() for g in [*geometries[2:8], geometries[0], geometries[8]]]
    sm.clear_matrix_cache()
    assert not sm._memory_cache


def test_disk_cache_file_record_and_refusals(tmp_path, monkeypatch):
    sm.clear_matrix_cache()
    geometry = sm.Geometry(8, 12, (0.1, 0.7), "strip", 1.5)  # angles that float32 cannot hold
    matrix = sm.system_matrix(geometry, tmp_path)
    path = tmp_path / f"radon_{geometry.key()}.pt"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    data = torch.load(path, weights_only=True)
    record = data["geometry"]
    assert {k: v for k, v in record.items() if k != "angles"} == {
        "format": 1, "image_size": 8, "n_detectors": 12, "projector": "strip", "detector_spacing": 1.5,
        "source_distance": None, "detector_distance": None}
    assert record["angles"].dtype == torch.float64 and torch.equal(record["angles"], torch.tensor([0.1, 0.7], dtype=torch.float64))
    assert all(torch.equal(data["matrix"][k], v) for k, v in matrix.tensors().items())

    def no_astra(geometry):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(sm, "_astra_matrix", no_astra)
    loaded = sm._load_from_disk(geometry.key(), geometry, tmp_path)
    assert loaded.shape == (24, 64) and all(torch.equal(loaded.tensors()[k], v) for k, v in matrix.tensors().items())
    sm.clear_matrix_cache()
    assert torch.equal(sm.system_matrix(geometry, tmp_path).parts[2], matrix.parts[2])
    # a record of another geometry under this key is not used; a missing file neither
    for change in [dict(format=2), dict(image_size=9), dict(n_detectors=13), dict(projector="linear"),
                   dict(angles=torch.tensor([0.1, 0.25], dtype=torch.float64)), dict(detector_spacing=1.0),
                   dict(source_distance=3.0), dict(detector_distance=3.0)]:
        torch.save({"geometry": {**record, **change}, "matrix": data["matrix"]}, path)
        assert sm._load_from_disk(geometry.key(), geometry, tmp_path) is None, change
    old = {k: v for k, v in record.items() if k not in ("detector_spacing", "source_distance", "detector_distance")}
    unit = sm.Geometry(8, 12, (0.1, 0.7), "strip")
    torch.save({"geometry": {**old, "n_detectors": 12}, "matrix": data["matrix"]}, path)
    assert sm._load_from_disk(geometry.key(), unit, tmp_path) is not None  # older records: unit pitch, parallel
    assert sm._load_from_disk("missing", geometry, tmp_path) is None
    # only tensors and plain values are read (weights_only): a file holding other objects is refused
    from fractions import Fraction

    torch.save({"geometry": {**record, "format": Fraction(1)}, "matrix": data["matrix"]}, path)
    with pytest.warns(UserWarning, match="^ignoring unreadable Radon matrix cache"):
        assert sm._load_from_disk(geometry.key(), geometry, tmp_path) is None
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match=f"^ignoring unreadable Radon matrix cache {re.escape(str(path))}: "):
        assert sm._load_from_disk(geometry.key(), geometry, tmp_path) is None


def test_apply_matrix_dtypes_transpose_and_gradient():
    sm.clear_matrix_cache()
    matrix = sm.system_matrix(sm.Geometry(4, 6, (0.0, 1.0), "linear"), None)
    dense_a = matrix.get("cpu", torch.float64)[0].to_dense()
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = sm.apply_matrix(matrix, x, (1, 2, 6), transpose=False)
    assert y.shape == (3, 1, 2, 6) and torch.allclose(y.reshape(3, -1), x.reshape(3, -1) @ dense_a.T, atol=1e-12)
    weights = torch.rand(3, 1, 2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    (y * weights).sum().backward()
    assert torch.allclose(x.grad.reshape(3, -1), weights.reshape(3, -1) @ dense_a, atol=1e-12)
    back = sm.apply_matrix(matrix, weights, (1, 4, 4), transpose=True)
    assert torch.allclose(back, x.grad, atol=1e-12)
    half = sm.apply_matrix(matrix, x.detach().half(), (1, 2, 6), transpose=False)
    assert half.dtype == torch.float16 and torch.allclose(half.double(), y.detach(), atol=5e-3)


def test_angles_arcs_and_projector_names():
    assert sm.as_angles(torch.tensor([0.5, 1.0])) == (0.5, 1.0) and sm.as_angles(np.array([[0.25]])) == (0.25,)
    assert sm.as_angles(1) == (1.0,) and all(type(a) is float for a in sm.as_angles(np.float32([0.5])))
    for bad in ([], [0.0, math.nan], [math.inf]):
        with raises_exactly("angles must be a non-empty sequence of finite numbers (radians)"):
            sm.as_angles(bad)
    angles = torch.tensor([0.0, 0.5, 1.0])
    assert sm.unmeasured_arc(angles) == pytest.approx(math.pi - 1.0)
    assert sm.unmeasured_arc(angles, 0.25) == pytest.approx(math.pi - 1.5)
    assert sm.unmeasured_arc(angles, 1.1) == 0.0                          # covered: max(…, 0)
    assert sm.unmeasured_arc(angles, math.pi / 2) == 0.0 and sm.unmeasured_arc(angles, 2.0) == 0.0
    assert sm.unmeasured_arc(torch.tensor([0.5]), 1.2) == pytest.approx(math.pi - 2.4)  # one view, a wide fan
    assert sm.unmeasured_arc(torch.tensor([3.0, 0.1])) == pytest.approx(2.9)
    assert sm.unmeasured_arc(torch.tensor([3.0, 1.5])) == pytest.approx(math.pi - 1.5)
    assert sm.unmeasured_arc(torch.arange(4) * math.pi / 4) == pytest.approx(math.pi / 4)
    for name in sm.PROJECTORS:
        assert sm.check_projector(name) == name
    with raises_exactly("unknown projector 'cuda'; expected one of linear, line, strip (ASTRA's CPU projectors)"):
        sm.check_projector("cuda")


# --- FanBeamOp ------------------------------------------------------------------------------------

def _fan(n_views=5, image_size=8, **options):
    if "angles" in options:
        n_views = None
    return FanBeamOp(n_views, image_size, source_distance=options.pop("source_distance", 20.0),
                     detector_distance=options.pop("detector_distance", 10.0), **options)


def test_fan_detectors_and_constructor_refusals():
    # ρ = N/√2, half width R ρ / √(R² − ρ²) on the virtual detector of pitch τ R / (R + D')
    radius = 8 / math.sqrt(2)
    half = 20 * radius / math.sqrt(400 - radius**2)
    assert fan_detectors(8, 20.0, 10.0, 1.5) == math.ceil(2 * half / (1.5 * 20 / 30) - 1e-9) == 12
    assert fan_detectors(8, 20.0, 0.0, 1.0) == math.ceil(2 * half) == 12
    assert fan_detectors(8, 8.0, 0.0, 1.0) == 16  # R ρ / √(R² − ρ²) = 8 for R = 8, ρ = √32
    assert FanBeamOp(4, source_distance=20, detector_distance=10, detector_spacing=0.5).detector_spacing == 0.5
    with raises_exactly("FanBeamOp: the source (source_distance=5.5) must lie outside the 8×8 image's "
                        "circumscribed circle (radius 5.657 pixels)"):
        fan_detectors(8, 5.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="must lie outside"):
        fan_detectors(8, radius, 1.0, 1.0)
    with raises_exactly("FanBeamOp: give the number of views (FanBeamOp(23, ...)) or angles=..., exactly one"):
        FanBeamOp(source_distance=20, detector_distance=10)
    for bad in (0, -1.0, math.nan, True, "3"):
        with raises_exactly(f"FanBeamOp: source_distance must be a positive number (pixel units), got {bad!r}"):
            FanBeamOp(4, source_distance=bad, detector_distance=10)
        with raises_exactly(f"FanBeamOp: detector_spacing must be a positive number (pixel units), got {bad!r}"):
            FanBeamOp(4, source_distance=20, detector_distance=10, detector_spacing=bad)
    for bad in (-1.0, math.inf, True, "3"):
        with raises_exactly(f"FanBeamOp: detector_distance must be a number >= 0 (pixel units), got {bad!r}"):
            FanBeamOp(4, source_distance=20, detector_distance=bad)
    assert FanBeamOp(4, source_distance=20, detector_distance=0).detector_spacing == 1.0
    with raises_exactly("FanBeamOp: unknown projector 'linear'; expected one of line, strip "
                        "(ASTRA's line_fanflat, strip_fanflat)"):
        FanBeamOp(4, source_distance=20, detector_distance=10, projector="linear")
    for name, bad in [("n_views", 0), ("n_views", 2.0), ("image_size", 0), ("detectors", 0), ("image_size", True)]:
        options = {"n_views": 4, name: bad}
        with raises_exactly(f"FanBeamOp: {name} must be a positive integer, got {bad!r}"):
            FanBeamOp(options.pop("n_views"), source_distance=20, detector_distance=10, **options)
    with pytest.raises(ValueError, match="must lie outside"):
        FanBeamOp(4, 8, source_distance=5.0, detector_distance=1.0, detectors=12)  # checked with detectors= too


def test_fan_geometry_values():
    op = _fan(4)
    assert op.detector_spacing == 1.5 and op.n_detectors == 12 and op.out_shape == (1, 4, 12)
    assert torch.equal(op.angles, torch.tensor([0.0, math.pi / 2, math.pi, 3 * math.pi / 2], dtype=torch.float64))
    assert op.fan_angle == pytest.approx(2 * math.atan(6 * 1.5 / 30))
    assert op.capabilities == frozenset({"line-integrals", "coarse-view"})
    assert op.capability_note == ("a fan-beam operator has no full-view transform T; method='decomposed' or "
                                  "'guidance' need only A and Aᵀ")
    with raises_exactly("FanBeamOp: " + op.capability_note):
        op._bind_full((1, 4, 12))
    assert op.projection_geometry == sm.Geometry(8, 12, tuple(op.angles.tolist()), "line_fanflat", 1.5, 20.0, 10.0)
    assert _fan(projector="strip").projection_geometry.projector == "strip_fanflat"
    unsized = FanBeamOp(4, source_distance=20, detector_distance=10)
    for call, what in [(lambda: unsized.fan_angle, "fan angle"), (lambda: unsized.projection_geometry,
                                                                  "projection geometry"),
                       (unsized.build, "system matrix")]:
        with pytest.raises(ValueError, match=f"has no image size yet, so no {what}: "):
            call()
    arc = _fan(angles=[0.0, 0.5, 1.0])
    assert arc.unmeasured_arc == pytest.approx(max(math.pi - 1.0 - arc.fan_angle, 0.0))
    assert _fan(40).unmeasured_arc == 0.0
    assert _fan(8).unmeasured_arc == pytest.approx(math.pi / 4 - _fan(8).fan_angle)
    short = FanBeamOp.short_scan(5, 0.4)
    assert short.dtype == torch.float64 and torch.allclose(short, torch.linspace(0, math.pi + 0.4, 5, dtype=torch.float64))
    virtual, pitch = op._virtual_detector(torch.float32, "cpu")
    assert pitch == pytest.approx(1.0) and virtual.dtype == torch.float32
    assert torch.allclose(virtual, torch.arange(12) - 5.5)


def _parker(beta, gamma, span):
    """Parker's weight as the docstring writes it (β from the arc's start, overscan δ = (Λ − π)/2)."""
    delta = (span - math.pi) / 2
    if beta < 2 * (delta - gamma):
        return math.sin(math.pi / 4 * beta / max(delta - gamma, 1e-12)) ** 2
    if beta <= math.pi - 2 * gamma:
        return 1.0
    return min(max(math.sin(math.pi / 4 * (math.pi + 2 * delta - beta) / max(delta + gamma, 1e-12)) ** 2, 0.0), 1.0)


def test_scan_weights_full_turn_limited_arc_and_short_scan():
    full = _fan(6).scan_weights()
    assert full.shape == (6, 12) and torch.equal(full, torch.full((6, 12), math.pi / 6, dtype=torch.float64))
    limited = _fan(angles=[0.0, 0.3, 0.5, 1.0]).scan_weights()
    assert torch.equal(limited, torch.tensor([0.3, 0.25, 0.35, 0.5], dtype=torch.float64)[:, None].expand(4, 12))
    single = _fan(angles=[0.7]).scan_weights()
    assert torch.equal(single, torch.full((1, 12), math.pi, dtype=torch.float64))
    assert _fan(angles=[0.7]).pinv(torch.ones(1, 1, 1, 12)).shape == (1, 1, 8, 8)
    op = _fan(angles=FanBeamOp.short_scan(9, _fan().fan_angle + 0.2))
    weights = op.scan_weights().numpy()
    beta = op.angles.numpy()
    span = float(beta[-1] - beta[0])
    gamma = -np.arctan(op._virtual_detector(torch.float64, "cpu")[0].numpy() / 20.0)
    step = span / 8
    gaps = np.full(9, step)
    gaps[[0, -1]] = step
    expected = np.array([[_parker(b - beta[0], g, span) * gap for g in gamma] for b, gap in zip(beta, gaps)])
    np.testing.assert_allclose(weights, expected, rtol=1e-12, atol=1e-15)
    assert (weights[0] == 0).all() and np.isclose(weights[4], step).any() and (weights < step - 1e-9).any()
    # shuffled views: the same weights, row for row
    order = [3, 0, 8, 1, 7, 2, 6, 4, 5]
    shuffled = _fan(angles=beta[order]).scan_weights().numpy()
    np.testing.assert_allclose(shuffled, weights[order], rtol=1e-12, atol=1e-15)


def _fan_fbp_by_hand(op, y, window="ram-lak"):
    """The documented fan-beam FBP, written out in loops (float64): pre-weight, ramp-filter by direct
    convolution with the band-limited kernel at the virtual pitch, back-project with R²/U²."""
    radius, n, d = op.source_distance, op.image_size, op.n_detectors
    pitch = op.detector_spacing * radius / (radius + op.detector_distance)
    u = (np.arange(d) - (d - 1) / 2) * pitch
    rows = y[0, 0].numpy() * radius / np.sqrt(radius**2 + u**2)
    k = np.arange(-(d - 1), d)
    odd = k % 2 == 1
    kernel = np.zeros(k.size)
    kernel[k == 0] = 0.25
    kernel[odd] = -1.0 / (np.pi * k[odd]) ** 2
    filtered = np.array([np.convolve(row, kernel)[d - 1:2 * d - 1] for row in rows]) / pitch
    filtered = filtered * op.scan_weights().numpy()
    image = np.zeros((n, n))
    for view, beta in enumerate(op.angles.numpy()):
        for i in range(n):
            for j in range(n):
                x, yy = j - (n - 1) / 2, (n - 1) / 2 - i
                t = x * math.cos(beta) + yy * math.sin(beta)
                big_u = radius - x * math.sin(beta) + yy * math.cos(beta)
                position = radius * t / big_u / pitch + (d - 1) / 2
                if not 0 <= position <= d - 1:
                    continue
                left = min(int(math.floor(position)), d - 2)
                share = position - left
                value = filtered[view, left] * (1 - share) + filtered[view, left + 1] * share
                image[i, j] += value * (radius / big_u) ** 2
    return image


@pytest.mark.parametrize("options", [dict(n_views=5), dict(n_views=70, detector_spacing=1.2),
                                     dict(angles=FanBeamOp.short_scan(7, 1.2) + 0.3, detector_distance=0.0),
                                     dict(n_views=5, detectors=5)],
                         ids=["full", "chunks", "short", "narrow"])
def test_fan_fbp_matches_the_documented_algorithm_by_hand(options):
    options = dict(options)
    op = FanBeamOp(options.pop("n_views", None), 6, source_distance=12.0,
                   detector_distance=options.pop("detector_distance", 6.0), **options)
    y = torch.rand(2, 1, op.n_views, op.n_detectors, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    image = op.pinv(y)
    assert image.shape == (2, 1, 6, 6) and image.dtype == torch.float64
    for item in range(2):
        np.testing.assert_allclose(image[item, 0].numpy(), _fan_fbp_by_hand(op, y[item:item + 1]), rtol=1e-9, atol=1e-12)
    single = op.pinv(y.float())
    assert single.dtype == torch.float32 and torch.allclose(single.double(), image, rtol=1e-4, atol=1e-5)
    half = op.pinv(y.half())                       # computed in float32, returned in float16
    assert half.dtype == torch.float16
    assert torch.allclose(half.float(), op.pinv(y.half().float()).half().float(), rtol=0, atol=0)


def test_fan_fbp_windows_and_refusals():
    op = _fan(5, 6, source_distance=12.0, detector_distance=6.0, fbp_filter="hann")
    y = torch.rand(2, 1, 5, op.n_detectors, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    ramp = op.pinv(y, filter="ram-lak")
    assert torch.allclose(ramp, op.with_options(fbp_filter="ram-lak").pinv(y), atol=0)
    assert not torch.allclose(op.pinv(y), ramp) and torch.equal(op.pinv(y), op.pinv(y, filter="hanning"))
    assert torch.equal(op.pinv(y)[1:], op.pinv(y[1:]))
    with pytest.raises(ValueError, match=r"^FanBeamOp\.pinv expects"):
        op.pinv(torch.zeros(1, 1, 4, op.n_detectors, dtype=torch.float64))
    unsized = FanBeamOp(5, source_distance=12.0, detector_distance=6.0, fbp_filter="hann")
    assert torch.equal(unsized.pinv(y, filter="ramp"), ramp)


def test_fan_options_configuration_and_repr():
    op = _fan(4, noise_std=0.5, fbp_filter="cosine", projector="strip")
    config = op.config()
    assert config == {"type": "FanBeamOp", "n_views": 4, "image_size": 8, "source_distance": 20.0,
                      "detector_distance": 10.0, "n_detectors": 12, "detector_spacing": 1.5, "projector": "strip",
                      "fbp_filter": "cosine", "noise": {"type": "GaussianNoise", "std": 0.5}}
    rebuilt = FanBeamOp.from_config(config)
    assert rebuilt.config() == config
    # the defaults (spacing = magnification, the default count) stay defaults: a resized copy follows N
    assert rebuilt.with_options(image_size=10).n_detectors == _fan(4, 10).n_detectors
    assert rebuilt._options()["detector_spacing"] is None and rebuilt._options()["detectors"] is None
    pitched = _fan(4, detector_spacing=2.0, detectors=10)
    assert fan_detectors(8, 20.0, 10.0, 2.0) == 9
    copy = FanBeamOp.from_config(pitched.config())
    assert copy.config() == pitched.config() and copy.with_options(image_size=10).n_detectors == 10
    assert copy.with_options(image_size=10).detector_spacing == 2.0
    explicit = _fan(4, detectors=13)
    assert FanBeamOp.from_config(explicit.config()).with_options(image_size=10).n_detectors == 13
    default = FanBeamOp.from_config(_fan(4, detectors=12).config())
    assert default.with_options(image_size=10).n_detectors == _fan(4, 10).n_detectors != 12
    minimal = {k: v for k, v in config.items() if k not in ("projector", "fbp_filter", "detector_spacing")}
    plain = FanBeamOp.from_config(minimal)
    assert (plain.projector, plain.fbp_filter, plain.detector_spacing) == ("line", "ram-lak", 1.5)
    arc = _fan(angles=[0.0, 0.5, 1.25])
    assert arc.config()["angles"] == [0.0, 0.5, 1.25] and "angles" not in config
    assert FanBeamOp.from_config(arc.config()).config() == arc.config()
    assert repr(op) == ("FanBeamOp(n_views=4, image_size=8, source_distance=20, detector_distance=10, n_detectors=12, "
                        "detector_spacing=1.5, projector='strip', noise=GaussianNoise(std=0.5))")
    assert repr(arc) == ("FanBeamOp(angles=[3 angles in 0…1.25], image_size=8, source_distance=20, "
                         "detector_distance=10, n_detectors=12, detector_spacing=1.5, projector='line', noise=None)")
    # n_views= and angles= choose the views two ways: setting one clears the other
    assert arc.with_options(n_views=6).n_views == 6 and arc.with_options(n_views=6).config().get("angles") is None
    assert op.with_options(angles=[0.0, 1.0]).angles.tolist() == [0.0, 1.0]
    # another window or noise keeps the geometry and shares its matrix; another geometry does not
    op.build()
    assert op.with_options(fbp_filter="hann")._matrix_cache is op._matrix_cache
    assert op.with_options(image_size=10)._matrix_cache is None
    assert op.__getstate__()["_matrix_cache"] is None and op._matrix_cache is not None


def test_fan_binding_from_the_detector_count():
    unsized = FanBeamOp(4, source_distance=20, detector_distance=10)
    for n in (1, 2, 5, 8, 14):
        d = _fan(4, n).n_detectors
        assert unsized._image_size_for(d) == n
    with raises_exactly("a fan-beam sinogram with 1000 detectors fits no N×N image with the default detector "
                        "count of this geometry (R=20, D'=10, pitch 1.5): pass image_size= (and detectors=) to "
                        "FanBeamOp"):
        unsized._image_size_for(1000)
    near = FanBeamOp(4, source_distance=6.0, detector_distance=0.0)
    assert near._image_size_for(fan_detectors(8, 6.0, 0.0, 1.0)) == 8
    with pytest.raises(ValueError, match="fits no N×N image"):
        near._image_size_for(fan_detectors(8, 6.0, 0.0, 1.0) + 1)
    assert unsized.bind(measurement_shape=(1, 4, 12)).image_size == 8


def test_fan_spec_builds_each_option():
    with raises_exactly("operator 'fanbeam' works on 1-channel images, the model has 3 channels"):
        FanBeamSpec(source_distance=20, detector_distance=10).build(8, 3)
    spec = FanBeamSpec(views=6, source_distance=20, detector_distance=10, detectors=11, detector_spacing=2.0,
                       noise_std=0.5)
    op = spec.build(8, 1)
    assert (op.n_views, op.image_size, op.source_distance, op.detector_distance, op.n_detectors,
            op.detector_spacing, op.noise.std) == (6, 8, 20.0, 10.0, 11, 2.0, 0.5)
    arc = FanBeamSpec(views=4, arc=2.0, source_distance=20, detector_distance=10, detectors=11,
                      detector_spacing=2.0, noise_std=0.5).build(8, 1)
    assert arc.angles.tolist() == [0.0, 0.5, 1.0, 1.5] and arc.config()["angles"] == [0.0, 0.5, 1.0, 1.5]
    assert (arc.image_size, arc.n_detectors, arc.detector_spacing, arc.noise.std) == (8, 11, 2.0, 0.5)
    assert FanBeamSpec(source_distance=20, detector_distance=10).build(8, 1).detector_spacing == 1.5


def test_build_makes_the_matrices_now_and_even_views_are_within_1e6():
    op = RadonOp(2, 8, full_views=4)
    assert op.build() is op and set(op._matrices) == {"measured"} and op._matrices["measured"].shape == (24, 64)
    assert set(op.build(full=True)._matrices) == {"measured", "full"} and op._matrices["full"].shape == (48, 64)
    with pytest.raises(ValueError, match="^RadonOp has no image size yet, so no system matrix: "):
        RadonOp(2).build()
    fan = _fan(4)
    assert fan.build() is fan and fan._matrix_cache.shape == (48, 64)
    nearly = np.arange(4) * math.pi / 4
    assert RadonOp(angles=nearly + 9e-7, image_size=8).has_full_transform
    assert not RadonOp(angles=nearly + [0, 0, 0, 2e-6], image_size=8).has_full_transform


def test_the_adjoint_of_the_adjoint_is_differentiable():
    matrix = sm.system_matrix(sm.Geometry(4, 6, (0.0, 1.0), "linear"), None)
    dense_a = matrix.get("cpu", torch.float64)[0].to_dense()
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    w = torch.rand(1, 1, 2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    v = torch.rand(1, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (gradient,) = torch.autograd.grad((sm.apply_matrix(matrix, x, (1, 2, 6), transpose=False) * w).sum(), x,
                                      create_graph=True)
    (gradient * v).sum().backward()
    assert torch.allclose(w.grad.reshape(-1), dense_a @ v.reshape(-1), atol=1e-12)


def _disk_image(n, radius, sub=8):
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    x = np.arange(n)[None, :, None, None] + offsets[None, None, None, :] - (n - 1) / 2
    y = (n - 1) / 2 - (np.arange(n)[:, None, None, None] + offsets[None, None, :, None])
    return torch.from_numpy(((x**2 + y**2) <= radius**2).mean(axis=(2, 3)))[None, None]


@pytest.mark.parametrize("spacing", [1.0, 1.5])
def test_a_small_disk_projects_to_its_line_integrals_and_back(spacing):
    """A centred disk of radius r: peak 2√(r² − s²) and area πr² in every view (s = cell offset · τ),
    centred; its FBP (parallel and fan) is 1 inside."""
    image = _disk_image(16, 5.0)
    op = RadonOp(6, 16, detector_spacing=spacing)
    sinogram = op(image)[0, 0].numpy()
    s = (np.arange(op.n_detectors) - (op.n_detectors - 1) / 2) * spacing
    analytic = 2 * np.sqrt(np.clip(25.0 - s**2, 0, None))
    np.testing.assert_allclose(sinogram.max(1), analytic.max(), rtol=0.03)
    np.testing.assert_allclose(sinogram.sum(1) * spacing, math.pi * 25.0, rtol=0.02)
    np.testing.assert_allclose((sinogram * s).sum(1) / sinogram.sum(1), 0.0, atol=0.05)
    dense_views = RadonOp(60, 16, detector_spacing=spacing)
    inside = dense_views.pinv(dense_views(image))[0, 0, 6:10, 6:10]
    assert abs(float(inside.mean()) - 1) < 0.05 and float((inside - 1).abs().max()) < 0.15
    fan = FanBeamOp(60, 16, source_distance=40.0, detector_distance=20.0)
    fan_inside = fan.pinv(fan(image))[0, 0, 6:10, 6:10]
    assert abs(float(fan_inside.mean()) - 1) < 0.05 and float((fan_inside - 1).abs().max()) < 0.15


def test_radon_configuration_round_trips_and_defaults():
    arc = RadonOp(angles=[0.1, 0.5, 1.25], image_size=8, n_detectors=9, detector_spacing=1.5, projector="strip",
                  fbp_filter="hann", noise_std=0.5)
    config = arc.config()
    assert config == {"type": "RadonOp", "n_views": 3, "image_size": 8, "n_detectors": 9, "full_views": None,
                      "projector": "strip", "fbp_filter": "hann", "noise": {"type": "GaussianNoise", "std": 0.5},
                      "angles": [0.1, 0.5, 1.25], "detector_spacing": 1.5}
    rebuilt = RadonOp.from_config(config)
    assert rebuilt.config() == config and rebuilt.with_options(image_size=10).n_detectors == 9
    plain = RadonOp(4, 8, full_views=8)
    assert plain.config() == {"type": "RadonOp", "n_views": 4, "image_size": 8, "n_detectors": 12, "full_views": 8,
                              "projector": "linear", "fbp_filter": "ram-lak", "noise": None}
    copy = RadonOp.from_config(plain.config())
    assert copy.config() == plain.config()
    resized = copy.with_options(image_size=10)       # the default count and views follow N
    assert resized.n_detectors == default_detectors(10) and resized.full_views == 8
    pitched = RadonOp.from_config(RadonOp(4, 8, detector_spacing=2.0).config())
    assert pitched.detector_spacing == 2.0 and pitched.with_options(image_size=10).n_detectors == default_detectors(10, 2.0)
    default_views = RadonOp.from_config(RadonOp(4, 8).config())
    assert default_views.with_options(n_views=6).full_views == default_full_views(6)
    minimal = {"n_views": 4, "image_size": 8}
    op = RadonOp.from_config(minimal)
    assert (op.projector, op.fbp_filter, op.n_detectors, op.full_views, op.noise) == ("linear", "ram-lak", 12, 180, None)
    with raises_exactly("RadonOp configuration: 2 angles for n_views=3"):
        RadonOp.from_config({**config, "angles": [0.1, 0.5]})


def test_fan_refusals_options_and_binding_with_given_detectors(tmp_path):
    with raises_exactly("FanBeamOp: noise_std must be a finite number >= 0, got -1.0"):
        _fan(noise_std=-1)
    unsized = FanBeamOp(4, source_distance=20, detector_distance=10, detectors=9, noise_std=0.5)
    assert unsized.n_detectors == 9 and unsized.noise.std == 0.5
    with raises_exactly("a FanBeamOp with detectors=9 cannot tell the image size from the sinogram: pass "
                        "image_size= or the image shape"):
        unsized.bind(measurement_shape=(1, 4, 9))
    with raises_exactly("the sinogram has 10 detectors, the FanBeamOp 9 (detectors)"):
        unsized.bind(measurement_shape=(1, 4, 10))
    assert unsized.bind(image_shape=(1, 8, 8)).n_detectors == 9
    sm.clear_matrix_cache()
    cached = _fan(4, cache_dir=tmp_path)
    assert cached.cache_dir == tmp_path and cached.build() is cached
    assert [p.name for p in tmp_path.iterdir()] == [f"radon_{cached.projection_geometry.key()}.pt"]
    # views given as a count stay a count, views given as angles stay angles
    assert "angles" not in _fan(4).with_options(fbp_filter="hann").config()
    arc = _fan(angles=[0.0, 0.5, 1.25])
    assert arc.with_options(fbp_filter="hann").config()["angles"] == [0.0, 0.5, 1.25]
    with raises_exactly("FanBeamOp: give the number of views (FanBeamOp(23, ...)) or angles=..., exactly one"):
        arc.with_options(n_views=3, angles=[0.0, 1.0])
    with raises_exactly("FanBeamOp: give the number of views (FanBeamOp(23, ...)) or angles=..., exactly one"):
        _fan(4).with_options(n_views=3, angles=[0.0, 1.0])
    # a pitch other than the magnification with its default count: a resized copy follows N
    pitched = FanBeamOp.from_config(_fan(4, detector_spacing=2.0).config())
    assert pitched.with_options(image_size=12).n_detectors == _fan(4, 12, detector_spacing=2.0).n_detectors != 9
    # a count that no N gives (between two N's defaults) is refused
    counts = [FanBeamOp(4, n, source_distance=20, detector_distance=10).n_detectors for n in range(1, 15)]
    missing = next(d for d in range(counts[0], counts[-1]) if d not in counts)
    with pytest.raises(ValueError, match=f"^a fan-beam sinogram with {missing} detectors fits no N×N image"):
        FanBeamOp(4, source_distance=20, detector_distance=10)._image_size_for(missing)


def test_scan_weights_edge_cases():
    two = _fan(2).scan_weights()
    assert torch.equal(two, torch.full((2, 12), math.pi / 2, dtype=torch.float64))
    jittered = np.arange(6) * math.pi / 3
    jittered[2] += 1e-7                                       # not an even turn: weighted as an arc
    assert not torch.allclose(_fan(angles=jittered).scan_weights(), _fan(6).scan_weights())
    assert torch.equal(_fan(angles=np.arange(6) * math.pi / 3 + 1e-13).scan_weights(), _fan(6).scan_weights())
    jittered[2] = 2 * math.pi / 3 + 5e-9                      # beyond 1e-9 relative and 1e-12: still not even
    assert not torch.allclose(_fan(angles=jittered).scan_weights(), _fan(6).scan_weights())
    # an arc of exactly π gets Parker's weights with no overscan; a shifted short scan the same as unshifted
    half_turn = _fan(angles=[0.0, 1.0, math.pi])
    gamma = -np.arctan(half_turn._virtual_detector(torch.float64, "cpu")[0].numpy() / 20.0)
    gaps = np.array([1.0, (math.pi) / 2, math.pi - 1.0])
    expected = [[_parker(b, g, math.pi) * gap for g in gamma] for b, gap in zip([0.0, 1.0, math.pi], gaps)]
    np.testing.assert_allclose(half_turn.scan_weights().numpy(), expected, rtol=1e-12, atol=1e-15)
    short = FanBeamOp.short_scan(9, _fan().fan_angle + 0.2)
    np.testing.assert_allclose(_fan(angles=short + 0.5).scan_weights().numpy(), _fan(angles=short).scan_weights().numpy(),
                               rtol=1e-12, atol=1e-15)


def test_radon_options_switch_views_and_detectors_and_keep_the_rest():
    op = RadonOp(4, 8, n_detectors=10)
    arc = op.with_options(angles=[0.0, 0.5, 1.0])
    assert arc.config()["angles"] == [0.0, 0.5, 1.0] and arc.n_detectors == 10 and arc.noise is None
    back = arc.with_options(n_views=6)
    assert back.n_views == 6 and back.has_full_transform and "angles" not in back.config()
    assert arc.with_options(fbp_filter="hann").config()["angles"] == [0.0, 0.5, 1.0]
    assert op.with_options(fbp_filter="hann").noise is None and op.with_options(image_size=10).n_detectors == 10
    assert op.with_options(detectors=9).n_detectors == 9
    for views in ({"n_views": 3, "angles": [0.0, 1.0]},):
        with raises_exactly("RadonOp: give the number of views (RadonOp(23)) or angles=..., exactly one"):
            op.with_options(**views)
        with raises_exactly("RadonOp: give the number of views (RadonOp(23)) or angles=..., exactly one"):
            arc.with_options(**views)
    assert op.with_options(detectors=9, n_detectors=7).n_detectors == 9  # detectors= names the option anew


def test_radon_binding_refusals_and_the_pitch():
    unsized = RadonOp(4, n_detectors=9)
    with raises_exactly("a RadonOp with n_detectors=9 cannot tell the image size from the sinogram: pass "
                        "image_size= or the image shape"):
        unsized.bind(measurement_shape=(1, 4, 9))
    assert RadonOp(4, detector_spacing=2.0).bind(measurement_shape=(1, 4, 6)).image_size == 8
    op = RadonOp(4, 8, full_views=8)
    for shape in [(2, 8, 12), (1, 4, 12), (1, 8)]:
        with raises_exactly(f"RadonOp's full sinograms have shape (1, 8, D), not {shape}"):
            op._bind_full(shape)
    with pytest.raises(ValueError, match=r"^RadonOp\.inverse_transform expects shape \(B, 1, 8, 12\)"):
        op.inverse_transform(torch.zeros(1, 1, 8, 11))
    with pytest.raises(ValueError, match=r"^RadonOp\.pinv expects shape \(B, 1, 4, 12\)"):
        op.pinv(torch.zeros(1, 1, 4, 11))
    full = torch.rand(1, 1, 8, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    hann = op.inverse_transform(full, filter="hann")
    assert torch.equal(hann, op.with_options(fbp_filter="hann").inverse_transform(full))
    assert not torch.allclose(hann, op.inverse_transform(full))
    assert op.pinv(torch.ones(1, 1, 4, 12, dtype=torch.float16)).dtype == torch.float16


def test_rounding_guards_of_the_default_detector_counts_and_view_weights():
    assert default_detectors(8, math.sqrt(2)) == 8                  # N√2/τ = 8 up to rounding
    radius = 8 / math.sqrt(2)
    half = 20 * radius / math.sqrt(400 - radius**2)
    spacing = 2 * half / 10 * 30 / 20                               # 2·half/τ' = 10 up to rounding
    assert fan_detectors(8, 20.0, 10.0, spacing) == 10
    assert fbp_module.view_weights(np.arange(6) * math.pi / 4) == math.pi / 6   # [0, 1.5π): each line ≥ once
    jittered = np.arange(4) * math.pi / 4
    jittered[1] += 1e-7
    assert not isinstance(fbp_module.view_weights(jittered), float)
    assert torch.equal(fbp_module.view_weights([0.5, 0.5]), torch.zeros(2, dtype=torch.float64))


def test_an_astra_matrix_of_the_wrong_shape_is_refused(monkeypatch):
    import astra
    import scipy.sparse

    monkeypatch.setattr(astra.matrix, "get", lambda mid: scipy.sparse.csr_matrix((3, 3)))
    with raises_exactly("ASTRA returned a (3, 3) matrix, expected (24, 64)", RuntimeError):
        sm._astra_matrix(sm.Geometry(8, 12, (0.0, 1.0), "linear"))


def test_radon_constructor_details(tmp_path):
    with raises_exactly("RadonOp: n_views must be a positive integer, got 0"):
        RadonOp(0)
    with raises_exactly("RadonOp: noise_std must be a finite number >= 0, got -1.0"):
        RadonOp(4, noise_std=-1)
    unsized = RadonOp(4, n_detectors=9, noise_std=0.5)
    assert unsized.n_detectors == 9 and unsized.noise.std == 0.5 and unsized.image_size is None
    arc = RadonOp(angles=[0.1, 0.5, 1.25], image_size=8)
    assert arc.full_angles is None and arc.measured_angles.dtype == torch.float64
    assert arc.measured_angles.tolist() == [0.1, 0.5, 1.25]
    pitched = RadonOp(2, 8, full_views=4, detector_spacing=1.5)
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(pitched.subsample(pitched.transform(x)), pitched(x), atol=1e-12)
    cached = RadonOp(2, 8, full_views=4, cache_dir=tmp_path)
    assert cached.cache_dir == tmp_path and cached.build(full=True) is cached
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"radon_{g.key()}.pt" for g in (cached._measured_geometry, cached._full_geometry))


def test_image_sizes_for_detector_counts_at_other_pitches():
    assert image_size_for_detectors(2) == 1
    assert image_size_for_detectors(7, math.sqrt(2)) == 7     # N√2/τ = 7 rounds below: the guess is 6
    assert image_size_for_detectors(3, 2.0) == 3              # N = 3 and 4 both give 3: the smaller
    with raises_exactly("a sinogram with 4 detectors fits no N×N image with the default ceil(N·√2/τ) detectors "
                        "(1×1 images give 3, 2×2 give 6): pass image_size= (and detectors=) to RadonOp"):
        image_size_for_detectors(4, 0.5)
    jittered = np.arange(4) * math.pi / 4
    jittered[1] += 5e-9                                        # beyond 1e-9 relative: not even
    assert not isinstance(fbp_module.view_weights(jittered), float)
    near = FanBeamOp(4, source_distance=8 / math.sqrt(2), detector_distance=0.0)
    with pytest.raises(ValueError, match="^a fan-beam sinogram with 99 detectors fits no N×N image"):
        near._image_size_for(99)


def test_cpu_products_do_not_depend_on_batch_mates():
    """On the CPU an item's product is the same bits alone, in any batch size and at any place in
    the batch (an unpadded batched product rounds a column by how many columns there are)."""
    matrix = sm.system_matrix(sm.Geometry(16, 23, tuple(np.arange(30) * math.pi / 30), "linear"), None)
    for dtype in (torch.float32, torch.float64):
        for a in matrix.get("cpu", dtype):
            x = torch.rand(9, a.shape[1], dtype=dtype, generator=torch.Generator().manual_seed(0))
            alone = torch.cat([sm._spmm(a, x[i:i + 1]) for i in range(9)])
            assert torch.allclose(alone, (a.to_dense() @ x.T).T, rtol=1e-5, atol=1e-5)
            for size in range(2, 10):
                assert torch.equal(sm._spmm(a, x[:size]), alone[:size])
            order = torch.randperm(9, generator=torch.Generator().manual_seed(1))
            assert torch.equal(sm._spmm(a, x[order]), alone[order])
