"""Patch priors: the tiling covers every pixel once, positions line up with the pixels they
describe, the assembled score is deterministic in (x, t), patch batches are area averages at the
stated positions, and a patch prior trains, resumes exactly and round-trips through a file."""

import pytest
import torch
import torch.nn.functional as F

from scoreinv.checkpoint import load_model, read_checkpoint, save_checkpoint
from scoreinv.config import ModelConfig, PatchConfig, SDEConfig, TrainingConfig, UNetConfig
from scoreinv.models import ScoreModel
from scoreinv.models.patch import position_channels, tile_starts, tiling_offsets
from scoreinv.distributed import world
from scoreinv.training import _PatchBatches, step_seed, train


def patch_config(patch: int = 16, low: int = 16, high: int = 64) -> ModelConfig:
    return ModelConfig(
        sde=SDEConfig(kind="ve", sigma_min=0.01, sigma_max=20.0),
        unet=UNetConfig(image_size=patch, channels=1, base_channels=8, channel_multipliers=(1, 2),
                        num_res_blocks=1, extra_input_channels=2),
        patch=PatchConfig(min_image_size=low, max_image_size=high),
    )


def coordinate_images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """u (columns) and v (rows) of every pixel centre of a size² image, each (size, size)."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    return u, v


@pytest.mark.parametrize("size, patch", [(64, 16), (50, 16), (16, 16), (37, 8), (512, 64)])
def test_the_tiles_own_every_pixel_exactly_once_and_lie_inside_the_image(size, patch):
    for offset in range(patch):
        tiles = tile_starts(size, patch, offset)
        owned = torch.zeros(size, dtype=torch.long)
        for start, low, high in tiles:
            assert 0 <= start <= size - patch and start <= low < high <= start + patch
            owned[low:high] += 1
        assert (owned == 1).all()
        # the interior grid lines sit at −k + i·P
        assert [low for _, low, _ in tiles[1:]] == [-offset + i * patch for i in range(1, len(tiles))]


def test_tile_errors():
    with pytest.raises(ValueError, match="smaller than the patch"):
        tile_starts(8, 16, 0)
    with pytest.raises(ValueError, match="offset"):
        tile_starts(64, 16, 16)


def test_offsets_are_a_fixed_function_of_t_and_move_between_steps():
    t = torch.linspace(1e-3, 1.0, 100)
    first, again = tiling_offsets(t, 64), tiling_offsets(t.clone(), 64)
    assert first == again
    assert all(0 <= k < 64 and 0 <= l < 64 for k, l in first)
    assert len(set(first)) > 90  # a new tiling almost every step
    assert len({k for k, _ in first}) > 40 and len({l for _, l in first}) > 40


def probe_model(patch: int = 16) -> ScoreModel:
    """A patch prior whose 'network' returns x + 10 u + 100 v from its position channels, so the
    assembled whole-image score must be x + 10 U + 100 V if patches, positions and pasting agree."""
    model = ScoreModel(patch_config(patch))

    def network(x, t, positions=None):
        return x + 10 * positions[:, :1] + 100 * positions[:, 1:]

    model._network_score = network
    return model


@pytest.mark.parametrize("size", [16, 40, 64])
def test_the_assembled_score_puts_each_patch_score_on_its_own_pixels(size):
    model = probe_model()
    u, v = coordinate_images(size)
    x = torch.randn(3, 1, size, size)
    for t in torch.linspace(0.01, 1.0, 7):
        score = model(x, t.repeat(3))
        torch.testing.assert_close(score, x + 10 * u + 100 * v, rtol=0, atol=1e-5)


def test_items_with_different_times_get_their_own_tilings_and_batches_do_not_mix():
    model = ScoreModel(patch_config(16), seed=0)
    with torch.no_grad():
        for parameter in model.parameters():  # leave the zero initialisation: a non-trivial network
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    x = torch.rand(3, 1, 48, 48)
    t = torch.tensor([0.2, 0.5, 0.9])
    with torch.no_grad():
        together = model(x, t)
        alone = torch.cat([model(x[i:i + 1], t[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)
    # the seams move: a different t at the same noise level's neighbourhood changes the tiling
    with torch.no_grad():
        shifted = model(x[:1], torch.tensor([0.2001]))
    assert not torch.allclose(shifted, together[:1], atol=1e-4)


def test_whole_image_input_is_checked():
    model = ScoreModel(patch_config(16, low=16, high=64))
    with pytest.raises(ValueError, match=r"16 <= N <= 64"):
        model(torch.rand(1, 1, 80, 80), torch.ones(1))
    with pytest.raises(ValueError, match="positions must have shape"):
        model(torch.rand(2, 1, 16, 16), torch.ones(2), torch.rand(2, 2, 8, 8))
    assert model.image_size is None and model.image_sizes == (16, 64) and model.patch_size == 16
    with pytest.raises(ValueError, match="patch prior"):
        ModelConfig(unet=UNetConfig(image_size=16, extra_input_channels=2))
    with pytest.raises(ValueError, match="extra_input_channels = 2"):
        ModelConfig(unet=UNetConfig(image_size=16), patch=PatchConfig(min_image_size=16, max_image_size=32))


def test_patch_batches_are_area_averages_at_the_positions_they_state():
    """Images whose pixels hold their own u coordinate at S²: a patch cut at image size N = S/f
    and area-averaged must hold the u coordinate of an N² image, i.e. its own position channel."""
    source = 64
    u, v = coordinate_images(source)
    data = torch.stack([torch.stack([u]), torch.stack([v])])  # (2, 1, S, S): image 0 holds u, image 1 holds v
    model = ScoreModel(patch_config(16, low=16, high=64))
    config = TrainingConfig(steps=1, batch_size=32, seed=3)
    batches = _PatchBatches(data, model, config, torch.device("cpu"), world())
    assert batches.image_sizes == [64, 32, 16]
    patches, positions, size, rows = batches.batch(0)
    assert patches.shape == (32, 1, 16, 16) and positions.shape == (32, 2, 16, 16) and size == 32
    generator = torch.Generator().manual_seed(step_seed(3, 0, "batch"))  # the batch's first draw: the images
    indices = torch.randint(2, (32,), generator=generator)
    for b in range(32):
        channel = int(indices[b])  # image 0 is u, image 1 is v
        torch.testing.assert_close(patches[b, 0], positions[b, channel], rtol=0, atol=1e-6)
    # several image sizes are drawn
    widths = {round(float(2 / (positions[b, 0, 0, 1] - positions[b, 0, 0, 0]))) for b in range(32)}
    assert widths == {16, 32, 64}


def test_patch_prior_trains_resumes_exactly_and_round_trips(tmp_path):
    data = torch.rand(6, 1, 64, 64)
    config = TrainingConfig(steps=4, batch_size=8, learning_rate=1e-3, warmup_steps=1, checkpoint_every=2, seed=0)
    straight = train(ScoreModel(patch_config(), seed=0), data, config, progress=False)
    path = tmp_path / "patch.pt"
    train(ScoreModel(patch_config(), seed=0), data, config.model_copy(update={"steps": 2}), checkpoint_path=path,
          progress=False)
    resumed = train(ScoreModel(patch_config(), seed=5), data, config, checkpoint_path=path, progress=False)
    assert straight.losses[2:] == resumed.losses
    assert read_checkpoint(path)["model_config"].patch == PatchConfig(min_image_size=16, max_image_size=64)
    loaded = load_model(path)
    assert loaded.is_patch_prior and loaded.image_sizes == (16, 64)
    model = ScoreModel(patch_config())
    resumed.ema.copy_to(model)
    x, t = torch.rand(2, 1, 40, 40), torch.tensor([0.3, 0.3])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t), model.eval()(x, t))
    save_checkpoint(tmp_path / "bare.pt", model)
    with torch.no_grad():
        torch.testing.assert_close(load_model(tmp_path / "bare.pt", weights="raw")(x, t), model(x, t))


def test_position_channels_match_the_pixel_grid():
    rows, cols = torch.arange(3, 7)[None], torch.arange(10, 14)[None]
    channels = position_channels(rows, cols, 32)
    u, v = coordinate_images(32)
    torch.testing.assert_close(channels[0, 0], u[3:7, 10:14])
    torch.testing.assert_close(channels[0, 1], v[3:7, 10:14])
    assert F.avg_pool2d(channels, 4).shape == (1, 2, 1, 1)


@pytest.mark.parametrize("patch_prior", [False, True])
def test_large_batches_are_split_into_network_calls_of_at_most_network_batch_inputs(patch_prior, monkeypatch):
    config = patch_config(16) if patch_prior else ModelConfig(
        sde=SDEConfig(kind="ve", sigma_min=0.01, sigma_max=20.0),
        unet=UNetConfig(image_size=16, channels=1, base_channels=8, channel_multipliers=(1, 2), num_res_blocks=1))
    model = ScoreModel(config, seed=0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1)))
    size = 40 if patch_prior else 16
    x, t = torch.rand(7, 1, size, size), torch.full((7,), 0.3)
    with torch.no_grad():
        whole = model(x, t)
    calls: list[int] = []
    network_score = model._network_score

    def counted(inputs, times, positions=None):
        calls.append(inputs.shape[0])
        return network_score(inputs, times, positions)

    monkeypatch.setattr(model, "_network_score", counted)
    model.network_batch = 3
    with torch.no_grad():
        split = model(x, t)
    assert max(calls) <= 3 and sum(calls) == (7 * 9 if patch_prior else 7)  # 40² in 16² tiles: 3 × 3 per image
    torch.testing.assert_close(split, whole, rtol=1e-4, atol=1e-4)  # batched convolutions round differently
