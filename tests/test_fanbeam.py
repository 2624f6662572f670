"""Fan-beam CT (FanBeamOp): exact line integrals of a disk, adjointness, the fan-beam FBP against the
parallel one, short scans, and the operator through reconstruct, the baselines, simulate, batch and
the command line."""

import math

import numpy as np
import pytest
import torch
from test_radon import disk, project, rel, supersampled

import scoreinv
from scoreinv.classical import sirt, tv_reconstruction
from scoreinv.config import OperatorConfig
from scoreinv.metrics import psnr
from scoreinv.operators import FanBeamOp, RadonOp, operator_from_config
from scoreinv.reconstruct import resolve_settings


def shepp_logan(n):
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return torch.from_numpy(resize(shepp_logan_phantom(), (n, n), anti_aliasing=True))[None, None]


@pytest.mark.parametrize("projector", ["line", "strip"])
def test_a_disk_projects_to_its_analytic_line_integrals(projector):
    """A centred disk of radius r: the ray of the cell at u passes the isocentre at
    s = R u / √((R + D)² + u²), so its line integral is 2√(r² − s²)."""
    n, r = 128, 40.0
    radius, distance = 2.0 * n, 1.0 * n
    op = FanBeamOp(12, n, source_distance=radius, detector_distance=distance, projector=projector)
    assert op.detector_spacing == 1.5 and op.n_detectors == 194  # one pixel at the isocentre, the whole image seen
    sinogram = project(op, supersampled(n, disk(0.0, 0.0, r)))
    u = (np.arange(op.n_detectors) - (op.n_detectors - 1) / 2) * op.detector_spacing
    s = radius * u / np.sqrt((radius + distance) ** 2 + u**2)
    analytic = np.broadcast_to(2 * np.sqrt(np.clip(r * r - s * s, 0, None)), sinogram.shape)
    error = rel(sinogram, analytic)
    print(f"\nfan-beam {projector} disk: relative L2 error {error:.4f}")
    assert error < 0.02  # measured 0.011 (line) and 0.012 (strip)


def test_adjoint_is_the_exact_transpose():
    op = FanBeamOp(angles=np.linspace(0.3, 4.0, 17), image_size=20, source_distance=40, detector_distance=25)
    assert op.check_adjoint(dtype=torch.float64) < 1e-5
    assert op.check_adjoint(dtype=torch.float32) < 1e-5
    small = FanBeamOp(3, 6, source_distance=12, detector_distance=6)
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(lambda image: small(image), (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [64, pytest.param(128, marks=pytest.mark.slow)])
def test_fan_fbp_of_shepp_logan_against_the_parallel_fbp(n):
    """Full scan at 360 views: relative error ≤ 1.25 × the parallel-beam FBP's at 180 views, same
    size; a short scan (π + the fan angle, 240 views, Parker weights) too."""
    x = shepp_logan(n)
    parallel = RadonOp(180, n)
    reference = float((parallel.pinv(parallel(x)) - x).norm() / x.norm())
    full = FanBeamOp(360, n, source_distance=2.0 * n, detector_distance=1.0 * n)
    fan = float((full.pinv(full(x)) - x).norm() / x.norm())
    short = FanBeamOp(angles=FanBeamOp.short_scan(240, full.fan_angle), image_size=n, source_distance=2.0 * n,
                      detector_distance=1.0 * n)
    short_error = float((short.pinv(short(x)) - x).norm() / x.norm())
    print(f"\nFBP relative error, Shepp–Logan {n}²: parallel 180 views {reference:.4f}, fan full scan 360 views "
          f"{fan:.4f}, fan short scan 240 views {short_error:.4f}")
    assert fan <= 1.25 * reference  # measured 0.143 against 0.175 at 64², 0.119 against 0.124 at 128²
    assert short_error <= 1.25 * reference  # measured 0.164 at 64², 0.143 at 128²
    assert abs(float(full.pinv(full(x)).sum() / x.sum()) - 1) < 0.01  # the scale is right


def test_scan_weights():
    op = FanBeamOp(8, 10, source_distance=20, detector_distance=10)
    assert torch.equal(op.scan_weights(), torch.full((8, op.n_detectors), math.pi / 8, dtype=torch.float64))
    # a minimal short scan: Parker's weights are in [0, 1], 0 at the ends for the rays they see twice
    short = FanBeamOp(angles=FanBeamOp.short_scan(101, op.fan_angle), image_size=10, source_distance=20,
                      detector_distance=10)
    parker = short.scan_weights() / (short.angles[1] - short.angles[0])
    assert float(parker.min()) >= 0 and float(parker.max()) <= 1 + 1e-12
    assert float(parker[0].max()) < 0.05 and float(parker[50].min()) == pytest.approx(1.0)


@pytest.mark.parametrize("options", [{"steps": 8, "num_samples": 1}, pytest.param({}, marks=pytest.mark.slow)],
                         ids=["short", "default"])
def test_reconstruct_works_as_written(options):
    """The card's call: the image size from the detector count, the bundled 64² CT prior (the default
    settings in the slow suite, 8 steps in the fast one)."""
    from scoreinv.datasets.phantoms import phantoms

    truth = phantoms("anatomy", 1, 64, seed=10**6 + 7)
    sinogram = FanBeamOp(23, 64, source_distance=128, detector_distance=64)(truth)[0, 0].numpy()  # (23, 97)
    x_hat = scoreinv.reconstruct(sinogram, operator=FanBeamOp(23, source_distance=128, detector_distance=64),
                                 progress=False, **options)
    assert isinstance(x_hat, np.ndarray) and x_hat.shape == (64, 64)
    fbp = FanBeamOp(23, 64, source_distance=128, detector_distance=64).pinv(torch.from_numpy(sinogram)[None, None])
    score, baseline = psnr(torch.from_numpy(x_hat)[None, None], truth)[0], psnr(fbp, truth)[0]
    print(f"\nfan-beam 23 views, 64², noise-free: scoreinv {score:.2f} dB, FBP {baseline:.2f} dB")
    assert score > baseline + (10 if not options else 3)  # default: measured 45.0 against 24.0
    settings = resolve_settings(FanBeamOp(23, 64, source_distance=128, detector_distance=64))
    assert (settings.method, settings.predictor, settings.corrector) == ("decomposed", "ddim", "none")
    with pytest.raises(ValueError, match="'consistency' does not suit FanBeamOp.*no full-view transform"):
        resolve_settings(FanBeamOp(23, 64, source_distance=128, detector_distance=64), method="consistency")


def test_the_classical_baselines_accept_it():
    from scoreinv.datasets.phantoms import phantoms

    truth = phantoms("anatomy", 2, 32, seed=10**6 + 7)
    op = FanBeamOp(23, 32, source_distance=64, detector_distance=32)
    y = op(truth)
    fbp = psnr(op.pinv(y), truth)
    assert (psnr(sirt(op, y, iterations=100), truth) > fbp).all()
    assert (psnr(tv_reconstruction(op, y, weight=0.02, iterations=100), truth) > fbp).all()


def test_configuration_binding_and_errors():
    short = FanBeamOp(angles=FanBeamOp.short_scan(9, 1.0), image_size=16, source_distance=30, detector_distance=10,
                      projector="strip", fbp_filter="hann", noise_std=0.02)
    rebuilt = operator_from_config(short.config())
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    assert rebuilt.config() == short.config() and torch.equal(rebuilt(x), short(x))
    unsized = FanBeamOp(5, source_distance=40, detector_distance=20)
    sized = unsized.bind(measurement_shape=(1, 5, FanBeamOp(5, 20, source_distance=40, detector_distance=20).n_detectors))
    assert sized.image_size == 20 and unsized.bind(image_shape=(1, 20, 20)) is sized
    assert operator_from_config(sized.config()).with_options(image_size=24).n_detectors == \
        FanBeamOp(5, 24, source_distance=40, detector_distance=20).n_detectors
    with pytest.raises(ValueError, match="outside the 64×64 image's circumscribed circle"):
        FanBeamOp(5, 64, source_distance=40, detector_distance=20)
    with pytest.raises(ValueError, match="exactly one"):
        FanBeamOp(5, angles=[0.0, 1.0], source_distance=40, detector_distance=20)
    with pytest.raises(ValueError, match="unknown projector 'linear'"):
        FanBeamOp(5, source_distance=40, detector_distance=20, projector="linear")
    with pytest.raises(TypeError, match="source_distance"):
        FanBeamOp(5)  # the geometry has no default
    with pytest.raises(ValueError, match="shape \\(1, 5, D\\)"):
        unsized.bind(measurement_shape=(1, 6, 30))


def test_the_unmeasured_arc_counts_the_directions_of_the_whole_fan():
    fan = dict(image_size=64, source_distance=128, detector_distance=64)
    full = FanBeamOp(23, **fan)
    assert full.unmeasured_arc == 0.0
    assert FanBeamOp(angles=FanBeamOp.short_scan(23, full.fan_angle), **fan).unmeasured_arc == 0.0
    # views over [0, π/2] measure the directions [−γ_m, π/2 + γ_m]: π/2 − 2γ_m of [0, π) stay unmeasured
    arc = FanBeamOp(angles=np.linspace(0, np.pi / 2, 30), **fan)
    assert arc.unmeasured_arc == pytest.approx(math.pi / 2 - full.fan_angle)


def test_size_mismatches_name_both_sizes_as_for_the_parallel_beam():
    fan = dict(source_distance=40, detector_distance=20)
    d20, d24 = FanBeamOp(5, 20, **fan).n_detectors, FanBeamOp(5, 24, **fan).n_detectors
    assert (d20, d24) == (31, 38)
    with pytest.raises(ValueError, match="the sinogram's 31 detectors fit 20×20 images, the model works on 24×24"):
        FanBeamOp(5, **fan).bind(image_shape=(1, 24, 24), measurement_shape=(1, 5, d20))
    with pytest.raises(ValueError, match="FanBeamOp was built for 24×24 images, the model works on 20×20"):
        FanBeamOp(5, 24, **fan).bind(image_shape=(1, 20, 20))
    with pytest.raises(ValueError, match=r"built for 24×24 images .*\(1, 5, 38\), not \(1, 5, 31\): the sinogram "
                                         "has 31 detectors, which fit 20×20 images"):
        FanBeamOp(5, 24, **fan).bind(measurement_shape=(1, 5, d20))
    with pytest.raises(ValueError, match=r"the sinogram has 31 detectors, the FanBeamOp 30 \(detectors\)"):
        FanBeamOp(5, detectors=30, **fan).bind(measurement_shape=(1, 5, 31))
    with pytest.raises(ValueError, match="a FanBeamOp with detectors=30 cannot tell the image size"):
        FanBeamOp(5, detectors=30, **fan).bind(measurement_shape=(1, 5, 30))
    with pytest.raises(ValueError, match=r"works on images of shape \(1, N, N\), not \(1, 20, 24\)"):
        FanBeamOp(5, **fan).bind(image_shape=(1, 20, 24))


def test_simulate_batch_and_the_command_line_take_it_through_its_spec(tmp_path):
    from tiny_batch import SIZE, data_file, tiny_checkpoint

    from scoreinv.app.batch import reconstruct_h5
    from scoreinv.app.cli.parser import build_parser, operator_flags

    config = OperatorConfig(kind="fanbeam", views=4, source_distance=32.0, detector_distance=16.0, noise_std=0.01)
    op = config.build(SIZE, 1)
    assert isinstance(op, FanBeamOp) and op.config() == FanBeamOp(
        4, SIZE, source_distance=32, detector_distance=16, noise_std=0.01).config()
    with pytest.raises(ValueError, match="source_distance"):
        OperatorConfig(kind="fanbeam", views=4)
    args = build_parser().parse_args(["data", "simulate", "in.h5", "out.h5", "--operator", "fanbeam",
                                      "--source-distance", "32", "--detector-distance", "16", "--arc", "4.0"])
    flags = {key.split(".", 1)[1]: value for key, value in operator_flags(args).items() if value is not None}
    assert OperatorConfig(**flags).build(SIZE, 1).n_views == 23
    data = data_file(tmp_path, n=2, operator=op)
    summary = reconstruct_h5(data, tmp_path / "out.h5", tiny_checkpoint(tmp_path / "tiny.pt"),
                             {"steps": 5, "num_samples": 1}, batch_size=2, progress=False)
    assert summary.items == 2
