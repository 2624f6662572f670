"""Parallel-beam geometry in full: any angles (limited arcs), detector count and pitch; the
methods that need the full-view transform refuse a geometry without one."""

import math

import numpy as np
import pytest
import torch
from test_radon import disk, project, rel, supersampled

from scoreinv.classical import sirt
from scoreinv.operators import RadonOp, operator_from_config
from scoreinv.operators.fbp import view_weights
from scoreinv.reconstruct import resolve_settings

ARC_90 = np.linspace(0, np.pi / 2, 60, endpoint=False)


def analytic_disk(op, r, spacing=1.0):
    u = (np.arange(op.n_detectors) - (op.n_detectors - 1) / 2) * spacing
    return np.broadcast_to(2 * np.sqrt(np.clip(r * r - u * u, 0, None)), (op.n_views, op.n_detectors))


def test_evenly_spaced_angles_are_the_n_views_operator():
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    by_count = RadonOp(9, 16)
    by_angles = RadonOp(angles=torch.arange(9) * math.pi / 9, image_size=16)
    assert torch.equal(by_count(x), by_angles(x)) and by_angles.full_views == by_count.full_views
    assert by_angles.config() == by_count.config()
    assert "full-transform" in by_angles.capabilities


@pytest.mark.parametrize("spacing", [1.0, 1.5])
def test_a_limited_arc_with_a_detector_pitch_projects_a_disk_to_its_line_integrals(spacing):
    n, r = 128, 40.0
    op = RadonOp(angles=ARC_90, image_size=n, detector_spacing=spacing)
    assert op.n_detectors == math.ceil(n * math.sqrt(2) / spacing) and op.out_shape == (1, 60, op.n_detectors)
    sino = project(op, supersampled(n, disk(0.0, 0.0, r)))
    assert rel(sino, analytic_disk(op, r, spacing)) < 0.01  # measured 0.004
    np.testing.assert_allclose(sino.sum(1) * spacing, math.pi * r * r, rtol=3e-3)


def test_limited_arc_adjointness_fbp_and_config():
    op = RadonOp(angles=ARC_90, image_size=24, detectors=40, detector_spacing=0.8)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 24, 24, generator=generator, dtype=torch.float64)
    z = torch.rand(3, 1, 60, 40, generator=generator, dtype=torch.float64)
    lhs, rhs = (op(x) * z).sum(), (x * op.adjoint(z)).sum()
    assert abs(float(lhs - rhs)) / float(lhs) < 1e-6
    rebuilt = operator_from_config(op.config())
    assert rebuilt.config() == op.config() and torch.equal(rebuilt(x), op(x))
    assert op.config()["angles"] == list(ARC_90) and op.config()["detector_spacing"] == 0.8
    # the FBP weights each view by its gap: a full arc of the same views agrees on the common part
    full = RadonOp(240, 24, detectors=40, detector_spacing=0.8)
    image = torch.zeros(1, 1, 24, 24, dtype=torch.float64)
    image[..., 8:16, 10:14] = 1.0
    arc = op.pinv(op(image))
    assert torch.isfinite(arc).all()
    assert abs(float(arc.sum() / full.pinv(full(image)).sum()) - 0.5) < 0.05  # a quarter turn sees half


def test_view_weights():
    assert view_weights(np.arange(10) * math.pi / 10) == math.pi / 10
    assert view_weights(ARC_90) == pytest.approx(math.pi / 120, rel=1e-12)
    assert view_weights(np.arange(360) * math.pi / 180) == math.pi / 360  # two turns of π: each line twice
    irregular = view_weights([0.0, 0.1, 0.3, 0.6])
    assert torch.allclose(irregular, torch.tensor([0.1, 0.15, 0.25, 0.3], dtype=torch.float64))


def test_methods_needing_the_full_view_transform_refuse_a_limited_arc():
    op = RadonOp(angles=ARC_90, image_size=16)
    assert op.capabilities == frozenset({"line-integrals", "coarse-view"}) and op.full_views is None
    for method in ("consistency", "replacement"):
        with pytest.raises(ValueError, match=rf"'{method}' does not suit RadonOp.*do not fill \[0, π\) evenly"):
            resolve_settings(op, method=method, steps=200)
    with pytest.raises(ValueError, match="no full-view transform"):
        op.transform(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="no full-view transform"):
        op.full_shape  # noqa: B018
    assert resolve_settings(op).method == "decomposed"
    assert resolve_settings(op, method="guidance").method == "guidance"


def test_sirt_takes_the_operator_geometry():
    n = 32
    image = torch.from_numpy(supersampled(n, disk(3.0, -2.0, 9.0)))[None, None]
    for op in (RadonOp(23, n), RadonOp(angles=np.linspace(0, 2 * np.pi / 3, 40, endpoint=False), image_size=n,
                                        detector_spacing=1.25)):
        y = op(image)
        x = sirt(op, y, iterations=200)
        assert float((op(x) - y).norm() / y.norm()) < 0.05
    with pytest.raises(ValueError, match="SIRT needs a CT operator"):
        from scoreinv.operators import MaskOp
        sirt(MaskOp(image_size=4, fraction=0.5), torch.zeros(1, 1, 4, 4))


def test_geometry_argument_errors():
    with pytest.raises(ValueError, match="exactly one"):
        RadonOp(23, 64, angles=ARC_90)
    with pytest.raises(ValueError, match="exactly one"):
        RadonOp(image_size=64)
    with pytest.raises(ValueError, match="same option"):
        RadonOp(23, 64, detectors=90, n_detectors=91)
    with pytest.raises(ValueError, match="detector_spacing must be a positive number"):
        RadonOp(23, 64, detector_spacing=0)
    with pytest.raises(ValueError, match="full_views needs views equally spaced"):
        RadonOp(angles=ARC_90, full_views=120)
    with pytest.raises(ValueError, match="finite"):
        RadonOp(angles=[0.0, float("nan")])
    # sized from the sinogram: D = ceil(N√2/τ)
    assert RadonOp(angles=ARC_90, detector_spacing=2.0).bind(measurement_shape=(1, 60, 46)).image_size == 64
    assert RadonOp(4).with_options(detectors=30).bind(image_shape=(1, 8, 8)).n_detectors == 30


def test_the_unmeasured_arc_is_the_widest_range_of_directions_no_view_measures():
    assert RadonOp(23).unmeasured_arc == pytest.approx(math.pi / 23)
    assert RadonOp(angles=ARC_90).unmeasured_arc == pytest.approx(math.pi / 2 + (math.pi / 2) / 60)
    # θ and θ + π measure the same lines: an arc over [π/2, 3π/2) leaves the same gap as [0, π)'s
    assert RadonOp(angles=np.linspace(np.pi / 2, 3 * np.pi / 2, 10, endpoint=False)).unmeasured_arc == \
        pytest.approx(math.pi / 10)
    assert RadonOp(angles=[0.3]).unmeasured_arc == pytest.approx(math.pi)
