"""The small operator families and their support, value by value: MaskOp and its packed mask,
GrayscaleOp, the noise models, and the family registry with its generated configuration model.

Tiny inputs and exact values (every refusal message in full), so that a changed constant,
comparison or message in these modules fails a test; a few milliseconds each.
"""

import hashlib
import math
import re
import typing

import numpy as np
import pytest
import torch

from scoreinv.operators import (FAMILIES, OPERATORS, GaussianNoise, GrayscaleOp, LinearOperator, MaskOp,
                                OperatorSpec, PoissonNoise, noise_from_config, operator_config_model,
                                operator_from_config, register_family, register_operator)
from scoreinv.operators import registry as registry_module
from scoreinv.operators.grayscale import GrayscaleSpec
from scoreinv.operators.mask import MaskSpec, _image_hw, pack_mask, unpack_mask
from scoreinv.operators.noise import make_noise
from scoreinv.operators.radon import RadonSpec


def raises_exactly(message: str, error=ValueError):
    """pytest.raises for exactly this message (not a part of it)."""
    return pytest.raises(error, match="^" + re.escape(message) + "$")


# --- MaskOp ---------------------------------------------------------------------------------------

def test_image_size_refusals_name_the_value():
    assert _image_hw(3) == (3, 3) and _image_hw(np.int64(2)) == (2, 2) and _image_hw((2, 5)) == (2, 5)
    with raises_exactly("image_size must be an int or (H, W), got 2.5"):
        _image_hw(2.5)
    with raises_exactly("image_size must be an int or (H, W), got (2, 2, 2)"):
        _image_hw((2, 2, 2))
    with raises_exactly("image_size must be positive, got (0, 3)"):
        _image_hw((0, 3))
    with raises_exactly("image_size must be positive, got 0"):
        _image_hw(0)


def test_mask_needs_exactly_one_pattern_and_names_what_it_got():
    with raises_exactly("MaskOp needs exactly one of mask=, boxes= or fraction=, got none"):
        MaskOp(image_size=3)
    with raises_exactly("MaskOp needs exactly one of mask=, boxes= or fraction=, got mask, boxes"):
        MaskOp(np.ones((3, 3)), boxes=[])
    with raises_exactly("MaskOp needs exactly one of mask=, boxes= or fraction=, got boxes, fraction"):
        MaskOp(image_size=3, boxes=[], fraction=0.5)
    with raises_exactly("MaskOp: channels must be positive, got 0"):
        MaskOp(np.ones((3, 3)), channels=0)


def test_mask_array_refusals():
    with raises_exactly("MaskOp: mask must have shape (H, W) or (C, H, W), got (4,)"):
        MaskOp(np.ones(4))
    with raises_exactly("MaskOp: mask must be bool or 0/1 numbers, got dtype torch.complex64"):
        MaskOp(torch.ones(2, 2, dtype=torch.complex64))
    with raises_exactly("MaskOp: mask values must be 0 (missing) or 1 (known)"):
        MaskOp(np.full((2, 2), 2.0))
    with raises_exactly("MaskOp: mask has 2 channels, expected 1 or 3"):
        MaskOp(np.ones((2, 3, 3)), channels=3)
    with raises_exactly("MaskOp: mask is 2×3 but image_size is (3, 2)"):
        MaskOp(np.ones((2, 3)), image_size=(3, 2))
    with raises_exactly("MaskOp: image_size is required with boxes= or fraction="):
        MaskOp(boxes=[])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.int64, np.float32, bool])
def test_mask_takes_integer_float_and_bool_arrays(dtype):
    values = np.array([[1, 0], [0, 1]], dtype=dtype)
    op = MaskOp(values)
    assert op.mask.tolist() == [[[1.0, 0.0], [0.0, 1.0]]] and op.known_fraction == 0.5


class _ArrayLike:
    """An object numpy reads through ``__array__`` (an image class, say), which torch cannot read directly."""

    def __array__(self, dtype=None, copy=None):
        return np.array([[1, 0], [1, 1]])


def test_mask_takes_a_tensor_that_requires_grad_an_array_like_and_a_one_channel_mask_for_every_channel():
    assert MaskOp(_ArrayLike()).mask.tolist() == [[[1.0, 0.0], [1.0, 1.0]]]
    op = MaskOp(torch.tensor([[1.0, 0.0]], requires_grad=True))
    assert op.mask.tolist() == [[[1.0, 0.0]]]
    shared = MaskOp(np.array([[[1, 0], [1, 1]]]), channels=3)
    assert shared.in_shape == (3, 2, 2) and shared.mask.tolist() == [[[1.0, 0.0], [1.0, 1.0]]] * 3


def test_boxes_refusals_and_empty_or_outside_boxes():
    with raises_exactly("MaskOp: each box must be (top, left, height, width), got (1, 2, 3)"):
        MaskOp(image_size=3, boxes=[(1, 2, 3)])
    with raises_exactly("MaskOp: box (0, 0, -1, 2) has a negative size"):
        MaskOp(image_size=3, boxes=[(0, 0, -1, 2)])
    with raises_exactly("MaskOp: box (0, 0, 2, -1) has a negative size"):
        MaskOp(image_size=3, boxes=[(0, 0, 2, -1)])
    # empty boxes and boxes wholly above or left of the image take no pixel
    for box in [(0, 0, 0, 2), (0, 0, 2, 0), (-3, 0, 2, 3), (0, -3, 3, 2)]:
        op = MaskOp(image_size=3, boxes=[box])
        assert op.mask.sum() == 9, box
    clipped = MaskOp(image_size=3, boxes=[(-1, 1, 2, 5)])
    assert clipped.mask[0].tolist() == [[1, 0, 0], [1, 1, 1], [1, 1, 1]]


def test_known_fraction_is_exact_in_float64():
    op = MaskOp(image_size=3, boxes=[(1, 1, 1, 1)])
    assert op.known_fraction == 8 / 9
    assert MaskOp(np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]])).known_fraction == 8 / 9


@pytest.mark.parametrize("fraction,kept", [(0.0, 0), (1.0, 9), (0.5, 4)])
def test_fraction_bounds_are_allowed_and_the_draw_is_the_generators_permutation(fraction, kept):
    op = MaskOp(image_size=3, fraction=fraction, generator=torch.Generator().manual_seed(5))
    assert op.mask.sum() == kept  # round(0.5 · 9) = 4 (round half to even)
    order = torch.randperm(9, generator=torch.Generator().manual_seed(5))
    expected = torch.zeros(9)
    expected[order[:kept]] = 1
    assert torch.equal(op.mask.reshape(-1), expected)
    for bad in (-0.1, 1.1):
        with raises_exactly(f"MaskOp: fraction must be in [0, 1], got {bad}"):
            MaskOp(image_size=3, fraction=bad)


def test_mask_noise_is_built_and_its_refusal_names_maskop():
    op = MaskOp(np.ones((2, 2)), noise_std=0.25)
    assert isinstance(op.noise, GaussianNoise) and op.noise.std == 0.25
    with raises_exactly("MaskOp: noise_std must be a finite number >= 0, got -1.0"):
        MaskOp(np.ones((2, 2)), noise_std=-1)


def test_mask_simulate_draws_from_the_generator_and_zeroes_unknown_pixels():
    mask = np.array([[1, 0], [1, 1]])
    op = MaskOp(mask, noise_std=0.5)
    x = torch.arange(4, dtype=torch.float64).reshape(1, 1, 2, 2)
    y = op.simulate(x, generator=torch.Generator().manual_seed(3))
    z = torch.randn((1, 1, 2, 2), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(y, (x + 0.5 * z) * torch.as_tensor(mask, dtype=torch.float64))


def test_with_options_of_a_boxes_mask_and_switching_patterns():
    boxes = MaskOp(image_size=3, boxes=[(0, 0, 1, 1)])
    other = boxes.with_options(boxes=[(2, 2, 1, 1)])
    assert other.noise is None and other.mask[0, 2, 2] == 0 and other.mask[0, 0, 0] == 1
    noisy = boxes.with_options(noise_std=0.5)
    assert noisy.config()["boxes"] == [[0, 0, 1, 1]] and noisy.noise.std == 0.5
    explicit = boxes.with_options(mask=np.zeros((3, 3)))
    assert explicit.known_fraction == 0.0
    drawn = boxes.with_options(fraction=1.0)
    assert drawn.known_fraction == 1.0 and drawn.config()["fraction"] == 1.0
    again = drawn.with_options(boxes=[(0, 0, 3, 3)])
    assert again.known_fraction == 0.0 and "fraction" not in again.config()


def test_pack_mask_format_and_unpack_refusals():
    mask = torch.tensor([[[1, 0, 1], [0, 1, 1], [1, 1, 0]]] * 2)
    packed = pack_mask(mask)
    assert packed["mask_shape"] == [3, 3]  # equal channels: one plane
    plane = unpack_mask(packed["mask_packed"], packed["mask_shape"])
    assert plane.dtype == np.bool_ and plane.tolist() == mask[0].bool().tolist()
    one_byte = pack_mask(torch.ones(2, 4))["mask_packed"]
    with raises_exactly("the packed MaskOp mask holds 8 bits, its shape (3, 3) needs 9"):
        unpack_mask(one_byte, (3, 3))
    with pytest.raises(ValueError, match=r"^the packed MaskOp mask is unreadable \("):
        unpack_mask("not zlib", (2, 2))


def test_mask_configuration_values_and_refusals():
    op = MaskOp(np.array([[1, 0], [1, 1]]))
    config = op.config()
    assert config["known_fraction"] == 0.75
    expected_hash = hashlib.sha256(np.array([[[1, 0], [1, 1]]], dtype=np.uint8).tobytes()).hexdigest()
    assert config["mask_sha256"] == expected_hash
    boxes = MaskOp(image_size=3, boxes=[(0, 0, 1, 1)], noise_std=0.5)
    rebuilt = MaskOp.from_config(boxes.config())
    assert rebuilt.noise.std == 0.5 and rebuilt.config() == boxes.config()
    bare = {key: value for key, value in config.items() if key not in ("mask_packed", "mask_shape")}
    with raises_exactly("a MaskOp with an explicit or random mask cannot be rebuilt from its configuration "
                        "alone: pass its mask (mask=...)"):
        MaskOp.from_config(bare)
    with raises_exactly("the mask given does not match the MaskOp configuration (mask_sha256 differs)"):
        MaskOp.from_config({**bare, "mask": np.ones((2, 2))})
    with raises_exactly("MaskOp: mask is 1×4 but image_size is (2, 2)"):  # the same bits in another shape
        MaskOp.from_config({**bare, "mask": np.array([[1, 0, 1, 1]])})


def test_mask_repr_for_each_pattern():
    assert repr(MaskOp(image_size=2, boxes=[(0, 0, 1, 1)])) == \
        "MaskOp(boxes=[[0, 0, 1, 1]], shape=(1, 2, 2), known_fraction=0.750, noise=None)"
    assert repr(MaskOp(image_size=2, fraction=0.5)) == \
        "MaskOp(fraction=0.5, shape=(1, 2, 2), known_fraction=0.500, noise=None)"
    assert repr(MaskOp(np.ones((2, 2)), noise_std=0.5)) == \
        "MaskOp(mask=..., shape=(1, 2, 2), known_fraction=1.000, noise=GaussianNoise(std=0.5))"


def test_mask_spec_builds_boxes_and_seeded_fractions():
    op = MaskSpec(boxes=[(0, 0, 1, 2)], noise_std=0.5).build(3, 2)
    assert op.in_shape == (2, 3, 3) and op.noise.std == 0.5 and op.config()["boxes"] == [[0, 0, 1, 2]]
    drawn = MaskSpec(fraction=0.5, mask_seed=7, noise_std=0.25).build(4, 3)
    expected = MaskOp(image_size=4, channels=3, fraction=0.5, generator=torch.Generator().manual_seed(7))
    assert drawn.in_shape == (3, 4, 4) and torch.equal(drawn.mask, expected.mask)
    assert drawn.noise.std == 0.25 and drawn.config()["fraction"] == 0.5


# --- GrayscaleOp ----------------------------------------------------------------------------------

def test_grayscale_mask_noise_and_options():
    op = GrayscaleOp(2)
    assert op.mask.tolist() == [[[1.0, 1.0]] * 2, [[0.0, 0.0]] * 2, [[0.0, 0.0]] * 2]
    assert GrayscaleOp(None, noise_std=0.5).noise.std == 0.5
    with raises_exactly("GrayscaleOp: noise_std must be a finite number >= 0, got -1.0"):
        GrayscaleOp(2, noise_std=-1)
    unsized = GrayscaleOp()
    assert unsized.bind() is unsized
    bound = unsized.bind(image_shape=(3, 2, 5))
    assert bound.in_shape == (3, 2, 5) and bound.noise is None


def test_grayscale_bind_refusals_name_both_sizes():
    with raises_exactly("GrayscaleOp takes measurements of shape (1, H, W), not (3, 2, 2)"):
        GrayscaleOp().bind(measurement_shape=(3, 2, 2))
    with raises_exactly("GrayscaleOp was built for 2×3 images, the model works on 4×5"):
        GrayscaleOp((2, 3)).bind(image_shape=(3, 4, 5))
    with raises_exactly("the measurement is 4×5, the GrayscaleOp was built for 2×3 images"):
        GrayscaleOp((2, 3)).bind(measurement_shape=(1, 4, 5))
    with raises_exactly("the measurement is 4×5, the model works on 2×3"):
        GrayscaleOp().bind(image_shape=(3, 2, 3), measurement_shape=(1, 4, 5))


def test_grayscale_unsized_configuration():
    assert GrayscaleOp().config() == {"type": "GrayscaleOp", "image_size": None, "noise": None}
    noisy = GrayscaleOp(noise_std=0.5)
    assert noisy.config() == {"type": "GrayscaleOp", "image_size": None,
                              "noise": {"type": "GaussianNoise", "std": 0.5}}
    assert GrayscaleOp.from_config(noisy.config()).noise.std == 0.5


def test_grayscale_spec():
    op = GrayscaleSpec(noise_std=0.5).build(4, 3)
    assert op.in_shape == (3, 4, 4) and op.out_shape == (1, 4, 4) and op.noise.std == 0.5
    with raises_exactly("operator 'grayscale' works on 3-channel images, the model has 4"):
        GrayscaleSpec().build(4, 4)


# --- noise models ---------------------------------------------------------------------------------

def test_noise_input_refusals():
    noise = GaussianNoise(0.5)
    with raises_exactly("a noise model expects a floating-point torch.Tensor, got list"):
        noise([0.0])
    with raises_exactly("a noise model expects a floating-point torch.Tensor, got float64"):
        noise(np.zeros(2))
    with raises_exactly("a noise model expects a floating-point torch.Tensor, got torch.int64"):
        noise(torch.zeros(2, dtype=torch.int64))
    with raises_exactly("a noise model's input contains NaN or inf"):
        noise(torch.tensor([0.0, math.inf]))


def test_gaussian_noise_values_and_refusals():
    assert GaussianNoise(0).std == 0.0
    for bad in (-1.0, math.inf, math.nan):
        with raises_exactly(f"GaussianNoise: std must be a finite number >= 0, got {bad}"):
            GaussianNoise(bad)
    assert torch.equal(GaussianNoise(0.5).std_at(torch.zeros(2, dtype=torch.float64)),
                       torch.full((2,), 0.5, dtype=torch.float64))
    y = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    for std in (1.0, 0.5):
        noisy = GaussianNoise(std)(y, generator=torch.Generator().manual_seed(2))
        z = torch.randn(3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        assert noisy.dtype == torch.float64 and torch.equal(noisy, y + std * z)
    torch.manual_seed(4)
    noisy = GaussianNoise(0.5)(y)
    torch.manual_seed(4)
    assert torch.equal(noisy, y + 0.5 * torch.randn_like(y))


def test_poisson_noise_values_and_refusals():
    noise = PoissonNoise(100.0)
    assert noise.attenuation_scale == 1.0 and noise.reference == 0.0
    assert PoissonNoise(0.5).incident_photons == 0.5
    for bad in (0.0, -1.0, math.inf):
        with raises_exactly(f"PoissonNoise: incident_photons must be > 0, got {bad}"):
            PoissonNoise(bad)
    for bad in (0.0, -1.0, math.nan):
        with raises_exactly(f"PoissonNoise: attenuation_scale must be > 0, got {bad}"):
            PoissonNoise(10.0, bad)
    assert noise.config() == {"type": "PoissonNoise", "incident_photons": 100.0, "attenuation_scale": 1.0,
                              "reference": 0.0}
    rebuilt = noise_from_config(PoissonNoise(50.0, 0.5, reference=2.0).config())
    assert isinstance(rebuilt, PoissonNoise) and rebuilt.config() == PoissonNoise(50.0, 0.5, reference=2.0).config()
    # −log(max(counts, 1)/I₀)/μ, zero and one count both giving log(I₀)/μ
    noise = PoissonNoise(3.0, 0.5)
    y = torch.tensor([-4.0, 0.0, 6.0, 20.0], dtype=torch.float64)
    rates = 3.0 * torch.exp(-0.5 * y)
    counts = torch.poisson(rates, generator=torch.Generator().manual_seed(1))
    assert (counts <= 1).any() and (counts > 1).any()
    noisy = noise(y, generator=torch.Generator().manual_seed(1))
    assert torch.equal(noisy, -torch.log(counts.clamp_min(1.0) / 3.0) / 0.5)
    torch.manual_seed(6)
    drawn = noise(y)
    torch.manual_seed(6)
    assert torch.equal(drawn, -torch.log(torch.poisson(rates).clamp_min(1.0) / 3.0) / 0.5)


def test_noise_configuration_and_make_noise_refusals():
    with raises_exactly("unknown noise model type 'Laplace' (expected GaussianNoise or PoissonNoise)"):
        noise_from_config({"type": "Laplace"})
    with raises_exactly("Op: noise must be a NoiseModel (GaussianNoise, PoissonNoise), got float"):
        make_noise(0.0, 0.5, "Op")
    with raises_exactly("Op: give either noise_std or noise, not both"):
        make_noise(0.5, GaussianNoise(0.5), "Op")
    for bad in (-1.0, math.inf):
        with raises_exactly(f"Op: noise_std must be a finite number >= 0, got {bad}"):
            make_noise(bad, None, "Op")
    assert make_noise(0.0, None, "Op") is None and make_noise(0.5, None, "Op").std == 0.5


# --- the registry -------------------------------------------------------------------------------

class _Twice(LinearOperator):
    def __init__(self, size=2):
        super().__init__((1, size, size), (1, size, size))

    def _forward(self, x):
        return 2 * x

    _adjoint = _forward

    @classmethod
    def from_config(cls, config):
        return cls(config["in_shape"][-1])


class _TwiceSpec(OperatorSpec):
    def build(self, image_size, channels):
        return _Twice(image_size)


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(registry_module, "FAMILIES", dict(FAMILIES))
    monkeypatch.setattr(registry_module, "OPERATORS", dict(OPERATORS))
    return registry_module


def test_register_family_records_the_family_and_its_rebuild(scratch_registry):
    family = register_family("twice", _Twice, _TwiceSpec)
    assert (family.kind, family.operator, family.spec) == ("twice", _Twice, _TwiceSpec)
    assert scratch_registry.FAMILIES["twice"] is family
    assert scratch_registry.OPERATORS["_Twice"] == _Twice.from_config
    with raises_exactly("register_family('bad'): the spec must subclass OperatorSpec, got 5"):
        register_family("bad", _Twice, 5)


def test_register_family_takes_its_own_rebuild(scratch_registry):
    def rebuild(config):
        return _Twice(3)

    register_family("twice", _Twice, _TwiceSpec, from_config=rebuild)
    assert scratch_registry.OPERATORS["_Twice"] is rebuild


def test_register_operator_refusals_and_the_configuration_handed_to_the_builder(scratch_registry):
    with raises_exactly("register_operator: the type name must be a non-empty string, got ''"):
        register_operator("")
    with raises_exactly("register_operator('x'): the builder must be callable, got 3"):
        register_operator("x", 3)
    seen = []

    @register_operator("Seen")
    def _build(config):
        seen.append(config)
        return _Twice()

    config = {"type": "Seen"}
    operator_from_config(config)
    operator_from_config(config, mask=np.ones(1))
    assert seen[0] is config and set(seen[1]) == {"type", "mask"}
    with raises_exactly("an operator configuration is a dict, got list"):
        operator_from_config([])
    registered = ", ".join(sorted(scratch_registry.OPERATORS))
    with raises_exactly(f"cannot rebuild an operator of type 'Nope' from its configuration (registered: "
                        f"{registered}; see register_operator)"):
        operator_from_config({"type": "Nope"})


def test_the_arc_angles_of_a_sinogram_spec():
    assert RadonSpec(views=4).arc_angles() is None
    assert RadonSpec(views=4, arc=2.0).arc_angles().tolist() == [0.0, 0.5, 1.0, 1.5]


def test_the_generated_configuration_model_names_descriptions_and_defaults():
    kinds = tuple(FAMILIES)
    model = operator_config_model()
    assert model.__name__ == "OperatorConfig" and model.__module__ == "scoreinv.config"
    assert model.model_fields["kind"].default == kinds[0]
    assert model.model_fields["kind"].description == "forward operator family: " + ", ".join(kinds)
    owners = [kind for kind in kinds if "views" in FAMILIES[kind].spec.model_fields]
    assert model.model_fields["views"].description == f"{', '.join(owners)}: measured views"
    assert model.model_fields["views"].annotation == (int | None)
    assert model.__doc__ == ("A forward operator named by the user, generated from the registered operator "
                             f"families ({', '.join(kinds)}); its image size comes from the model or the images.")
    assert model.family_defaults("views") == "; ".join(f"{kind} 23" for kind in owners)
    assert model.family_defaults("detectors") == "; ".join(f"{kind} unset" for kind in owners)
    fan = [kind for kind in kinds if "source_distance" in FAMILIES[kind].spec.model_fields]
    assert fan and model.family_defaults("source_distance") == "; ".join(f"{kind} required" for kind in fan)
    last = operator_config_model(kinds[-1])
    assert last.model_fields["kind"].default == kinds[-1]
    assert operator_config_model("radon")().kind == "radon"
    with raises_exactly(f"no operator family 'blur' is registered (registered: {', '.join(kinds)})"):
        operator_config_model("blur")


def test_the_configuration_model_needs_a_family(monkeypatch):
    monkeypatch.setattr(registry_module, "FAMILIES", {})
    with raises_exactly("no operator family is registered", RuntimeError):
        operator_config_model()


def test_optional_annotations():
    assert registry_module._optional(int) == (int | None)
    assert registry_module._optional(typing.Optional[int]) == typing.Optional[int]
