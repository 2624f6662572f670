"""U-Net, score model and EMA: shapes, validation, scaling, EMA arithmetic."""

import math

import pytest
import torch
from torch import nn

from conftest import tiny_model, tiny_model_config
from scoreinv.config import ModelConfig, UNetConfig
from scoreinv.models import EMA, ScoreModel, UNet
from scoreinv.sde import VESDE, VPSDE


def tiny_unet_config(**overrides) -> UNetConfig:
    return tiny_model_config(**overrides).unet


def randomise_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter random values: the zero-initialised layers would hide bugs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    return module


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("attention", [(), (4,), (8, 4)])
def test_unet_output_shape(channels, attention):
    net = randomise_(UNet(tiny_unet_config(channels=channels, attention_resolutions=attention)))
    x = torch.randn(3, channels, 8, 8)
    out = net(x, torch.rand(3))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    has_attention = any(type(m).__name__ == "AttentionBlock" for m in net.modules())
    assert has_attention == bool(attention)


def test_unet_three_levels_and_other_sizes():
    """A 3-level net runs on any size divisible by 4, not only config.image_size."""
    net = randomise_(UNet(tiny_unet_config(image_size=16, channel_multipliers=(1, 2, 2), attention_resolutions=(4,))))
    for size in (16, 12, 8):
        x = torch.randn(2, 1, size, size)
        assert net(x, torch.rand(2)).shape == x.shape


def test_unet_starts_at_zero_and_depends_on_time():
    net = UNet(tiny_unet_config(attention_resolutions=(4,)))
    x = torch.randn(4, 1, 8, 8)
    # zero-initialised head: the untrained network outputs exactly 0
    assert torch.equal(net(x, torch.rand(4)), torch.zeros_like(x))
    randomise_(net)
    early = net(x, torch.full((4,), 0.1))
    late = net(x, torch.full((4,), 0.9))
    assert (early - late).abs().max() > 1e-3


def test_unet_batch_items_are_independent():
    """GroupNorm / attention must not mix batch items: item 0 is the same alone or in a batch."""
    net = randomise_(UNet(tiny_unet_config(attention_resolutions=(8, 4))))
    x, t = torch.randn(5, 1, 8, 8), torch.rand(5)
    assert torch.allclose(net(x, t)[:1], net(x[:1], t[:1]), atol=1e-5)


def test_unet_fourier_features_fixed_buffer():
    torch.manual_seed(1)
    a = UNet(tiny_unet_config(fourier_scale=16.0))
    torch.manual_seed(2)
    b = UNet(tiny_unet_config(fourier_scale=16.0))
    frequencies = a.time_features.frequencies
    assert "time_features.frequencies" in a.state_dict()
    assert "time_features.frequencies" not in dict(a.named_parameters())
    assert torch.equal(frequencies, b.time_features.frequencies)  # independent of the global RNG
    assert frequencies.numel() == 8
    # drawn with std = fourier_scale (loose: 8 draws)
    assert 4.0 < frequencies.std().item() < 40.0


def test_unet_group_norm_groups_reduced_to_divide_width():
    net = UNet(tiny_unet_config(base_channels=12, group_norm_groups=8))
    for module in net.modules():
        if isinstance(module, nn.GroupNorm):
            assert module.num_channels % module.num_groups == 0
    assert {m.num_groups for m in net.modules() if isinstance(m, nn.GroupNorm)} >= {6, 8}
    randomise_(net)
    assert net(torch.randn(2, 1, 8, 8), torch.rand(2)).shape == (2, 1, 8, 8)


@pytest.mark.parametrize(
    "settings",
    [
        dict(image_size=10, channel_multipliers=(1, 2, 2)),  # 10 not divisible by 4
        dict(channels=2),
        dict(attention_resolutions=(2,)),  # not a resolution of an 8-pixel, 2-level net
        dict(channel_multipliers=(1, 0)),
    ],
)
def test_bad_unet_config_raises(settings):
    with pytest.raises(ValueError):
        UNet(tiny_unet_config(**settings))


def test_unet_rejects_bad_input():
    net = UNet(tiny_unet_config(image_size=16, channel_multipliers=(1, 2, 2)))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 1, 10, 10), torch.rand(1))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.randn(1, 3, 16, 16), torch.rand(1))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        net(torch.randn(2, 1, 16, 16), torch.rand(3))


def score_model(kind: str = "ve", **unet) -> ScoreModel:
    return tiny_model(tiny_model_config(sde=kind, sigma_max=5.0, **unet), seed=None)


def test_score_model_properties():
    model = score_model(channels=3)
    assert isinstance(model.sde, VESDE) and model.sde.sigma_max == 5.0
    assert model.image_size == 8 and model.channels == 3
    assert model.value_range == (0.0, 1.0)
    assert isinstance(model.config, ModelConfig)
    assert isinstance(score_model("vp").sde, VPSDE)


@pytest.mark.parametrize(
    "x, t, pattern",
    [
        (torch.randn(2, 3, 8, 8), torch.rand(2), r"\(B, 1, 8, 8\).*\(2, 3, 8, 8\)"),
        (torch.randn(2, 1, 16, 16), torch.rand(2), r"\(B, 1, 8, 8\).*\(2, 1, 16, 16\)"),
        (torch.randn(1, 8, 8), torch.rand(1), r"\(B, 1, 8, 8\).*\(1, 8, 8\)"),
        (torch.ones(2, 1, 8, 8, dtype=torch.int64), torch.rand(2), r"\(B, 1, 8, 8\).*int64"),
        (torch.randn(2, 1, 8, 8), torch.rand(2, 1), r"\(B,\) = \(2,\).*\(2, 1\)"),
        (torch.randn(2, 1, 8, 8), torch.rand(3), r"\(B,\) = \(2,\).*\(3,\)"),
    ],
)
def test_score_model_rejects_wrong_shapes(x, t, pattern):
    with pytest.raises(ValueError, match=pattern):
        score_model()(x, t)


@pytest.mark.parametrize("kind", ["ve", "vp", "subvp"])
def test_score_model_divides_unet_output_by_std(kind):
    model = randomise_(score_model(kind, attention_resolutions=(4,)))
    x = torch.randn(4, 1, 8, 8)
    t = torch.tensor([1e-3, 0.2, 0.6, 1.0])
    unet_out = model.unet(x, t)
    assert unet_out.abs().min() > 0
    ratio = unet_out / model(x, t)  # = std(t), the same for every pixel of an item
    if kind == "ve":
        expected = 0.01 * (5.0 / 0.01) ** t  # σ_min (σ_max/σ_min)^t, from the formula
    else:
        expected = model.sde.marginal_std(t)
    assert torch.allclose(ratio, expected[:, None, None, None].expand_as(ratio), rtol=1e-5)


# -- EMA ------------------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("counter", torch.zeros(2))


def test_ema_update_is_exact_on_representable_values():
    model = Tiny()
    with torch.no_grad():
        model.linear.weight.fill_(1.0)
        model.linear.bias.fill_(-2.0)
    ema = EMA(model, decay=0.75)
    with torch.no_grad():
        model.linear.weight.fill_(3.0)
        model.linear.bias.fill_(2.0)
        model.counter.fill_(7.0)
    ema.update(model)
    # 0.75·1 + 0.25·3 = 1.5 and 0.75·(−2) + 0.25·2 = −1 are exact in float32
    assert torch.equal(ema.shadow["linear.weight"], torch.full((2, 3), 1.5))
    assert torch.equal(ema.shadow["linear.bias"], torch.full((2,), -1.0))
    # buffers are copied, not averaged
    assert torch.equal(ema.shadow["counter"], torch.full((2,), 7.0))


def test_ema_update_random_values_and_copy_to():
    torch.manual_seed(0)
    model = Tiny()
    decay = 0.9
    ema = EMA(model, decay=decay)
    old = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    new = {k: v.clone() for k, v in model.state_dict().items()}
    ema.update(model)
    for name in ("linear.weight", "linear.bias"):
        assert torch.allclose(ema.shadow[name], decay * old[name] + (1 - decay) * new[name], rtol=1e-6, atol=1e-7)
        assert not torch.allclose(ema.shadow[name], new[name])
    # the shadow is a copy: changing the model does not change it
    snapshot = ema.shadow["linear.weight"].clone()
    with torch.no_grad():
        model.linear.weight.zero_()
    assert torch.equal(ema.shadow["linear.weight"], snapshot)
    ema.copy_to(model)
    assert torch.equal(model.linear.weight, snapshot)


def test_ema_state_dict_round_trip_and_decay_validation():
    model = Tiny()
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.linear.weight.add_(1.0)
    ema.update(model)
    other = EMA(Tiny(), decay=0.1)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.5
    for name in ema.shadow:
        assert torch.equal(other.shadow[name], ema.shadow[name])
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="decay"):
            EMA(model, decay=bad)
    with pytest.raises(ValueError, match="missing"):
        ema.update(nn.Linear(3, 2))
    assert math.isclose(EMA(model, 0.0).decay, 0.0)


def test_score_model_output_keeps_input_dtype():
    """float32 out under bfloat16 autocast (the AMP training path) and for float64 times."""
    model = randomise_(score_model())
    x = torch.randn(2, 1, 8, 8)
    assert model(x, torch.rand(2, dtype=torch.float64)).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, torch.rand(2))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_seeded_model_has_reproducible_weights_and_leaves_global_rng_alone():
    config = ModelConfig(unet=UNetConfig(image_size=8, base_channels=8, channel_multipliers=(1, 2)))
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    first = ScoreModel(config, seed=3)
    assert torch.equal(torch.rand(3), expected_next)
    second, other = ScoreModel(config, seed=3), ScoreModel(config, seed=4)
    pairs = list(zip(first.state_dict().values(), second.state_dict().values(), other.state_dict().values()))
    assert all(torch.equal(a, b) for a, b, _ in pairs)
    assert not all(torch.equal(a, c) for a, _, c in pairs)
