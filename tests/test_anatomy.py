"""The anatomy family: seeded, in range, every region, tissues at their HU, and more than piecewise constant."""

import pytest
import torch
import torch.nn.functional as F

from scoreinv.config import PhantomDataConfig
from scoreinv.datasets.anatomy import LABELS, REGIONS, anatomy_phantoms
from scoreinv.datasets.generate import data_blocks
from scoreinv.datasets.hounsfield import HU_WINDOW, TISSUE_HU, hu_to_unit, tissue_unit, unit_to_hu
from scoreinv.datasets.phantoms import chest_phantoms, phantoms


@pytest.fixture(scope="module")
def drawn():
    """Nine slices at 96², three of each region, with labels, in HU."""
    images, labels = anatomy_phantoms(9, 96, 7, return_labels=True)
    return images, labels, unit_to_hu(images)


def interior(labels: torch.Tensor, name: str) -> torch.Tensor:
    """Pixels of a tissue whose 3×3 neighbourhood is all that tissue (no partial volume)."""
    k = LABELS.index(name)
    mask = (labels == k).float()
    return (-F.max_pool2d(-mask, 3, 1, 1)) > 0.5


def test_hu_window_round_trip():
    assert HU_WINDOW == (-1000.0, 2000.0)
    assert hu_to_unit(-1000.0) == 0 and hu_to_unit(2000.0) == 1 and hu_to_unit(-1200.0) == 0
    hu = torch.linspace(-1000, 2000, 7)
    assert torch.allclose(unit_to_hu(hu_to_unit(hu)), hu, atol=1e-3)
    assert tissue_unit("water") == pytest.approx(1 / 3)
    assert hu_to_unit(40.0, window=(-160, 240)) == pytest.approx(0.5)
    for name in ("air", "lung", "fat", "water", "soft_tissue", "blood", "muscle", "liver", "cancellous_bone",
                 "cortical_bone"):
        typical, low, high = TISSUE_HU[name]
        assert low <= typical <= high and 0 <= hu_to_unit(typical) <= 1
    with pytest.raises(ValueError, match="window"):
        hu_to_unit(0.0, window=(100, 100))


def test_seeded_shaped_and_in_range():
    first = anatomy_phantoms(6, 48, torch.Generator().manual_seed(3))
    again = anatomy_phantoms(6, 48, 3)
    other = anatomy_phantoms(6, 48, 4)
    assert first.shape == (6, 1, 48, 48) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 1
    assert torch.equal(phantoms("anatomy", 6, 48, seed=3), first)


def test_the_same_seed_draws_the_same_anatomy_at_any_size():
    small = anatomy_phantoms(3, 32, 1)
    large = anatomy_phantoms(3, 128, 1)
    assert (F.avg_pool2d(large, 4) - small).abs().mean() < 0.02


def test_every_region_and_its_tissues(drawn):
    _, labels, _ = drawn
    present = [set(labels[i].unique().tolist()) for i in range(9)]
    regions = [REGIONS[i % 3] for i in range(9)]
    expected = {"head": {"grey_matter", "white_matter", "csf", "cortical_bone"},
                "thorax": {"lung", "vessel", "cortical_bone", "cancellous_bone", "fat", "muscle"},
                "abdomen": {"fat", "muscle", "cancellous_bone", "vessel"}}
    for found, region in zip(present, regions):
        names = {LABELS[k] for k in found}
        assert expected[region] <= names, (region, expected[region] - names)
        assert ("lung" in names) == (region == "thorax")
    abdomen = {LABELS[k] for i in range(2, 9, 3) for k in present[i]}
    assert {"liver", "bowel"} <= abdomen
    one = anatomy_phantoms(2, 32, 0, region="head", return_labels=True)[1]
    assert LABELS.index("grey_matter") in one.unique() and LABELS.index("lung") not in one.unique()
    with pytest.raises(ValueError, match="unknown region"):
        anatomy_phantoms(1, 32, 0, region="knee")


def test_tissues_at_their_hounsfield_units(drawn):
    images, labels, hu = drawn
    assert images[:, :, :4, :4].max() == 0  # air around the patient: -1000 HU is 0
    # medians of pure (interior) pixels within the reference ranges (liver, kidney: enhanced up to +150 HU)
    ranges = {"lung": (-900, -700), "grey_matter": (33, 47), "white_matter": (18, 37), "csf": (-2, 20),
              "muscle": (30, 60), "cancellous_bone": (150, 500), "liver": (45, 160)}
    for name, (low, high) in ranges.items():
        pure = interior(labels, name)
        for i in range(9):
            if pure[i].sum() >= 10:
                median = hu[i][pure[i]].median().item()
                assert low <= median <= high, (name, i, median)
    fat = hu[interior(labels, "fat")]
    assert -130 <= fat.median() <= -20  # subcutaneous and visceral fat (mottled in the abdomen)
    # cortical bone: the densest pixels of every trunk slice reach cortical HU despite partial volume
    for i in range(9):
        assert hu[i].max() > 900


def test_more_than_piecewise_constant(drawn):
    images, labels, hu = drawn
    for name, least, pixels in (("liver", 3.0, 30), ("grey_matter", 1.5, 30), ("white_matter", 1.5, 30),
                                ("lung", 15.0, 30), ("cancellous_bone", 20.0, 8)):
        pure = interior(labels, name)
        stds = [hu[i][pure[i]].std().item() for i in range(9) if pure[i].sum() >= pixels]
        assert stds and min(stds) > least, (name, stds)
    # smooth variation across an organ, not only pixel noise: it survives a 5×5 average
    smooth = F.avg_pool2d(hu, 5, 1, 2)
    core = (-F.max_pool2d(-interior(labels, "liver").float(), 5, 1, 2)) > 0.5
    spreads = [smooth[i][core[i]].std().item() for i in range(9) if core[i].sum() >= 50]
    assert spreads and min(spreads) > 1.5, spreads
    # partial volume: the body outline has intermediate values between air and tissue
    body = (images > hu_to_unit(-950.0)) & (images < hu_to_unit(-150.0))
    assert (body.flatten(1).sum(dim=1) > 20).all()
    # many distinct grey levels, where the chest family has a handful plus texture
    assert all(images[i].unique().numel() > 1000 for i in range(9))
    assert (images.flatten(1).std(dim=1) > 0.05).all()
    chest = chest_phantoms(1, 96, torch.Generator().manual_seed(0))
    assert chest.unique().numel() < images[1].unique().numel()


def test_anatomy_family_in_data_configurations():
    config = PhantomDataConfig(family="anatomy", n=5, size=32, seed=2, block_size=4)
    blocks = list(data_blocks(config))
    assert [b.shape[0] for b in blocks] == [4, 1]
    assert torch.equal(blocks[0], anatomy_phantoms(4, 32, 2))


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        anatomy_phantoms(2, 8, 0)
    with pytest.raises(ValueError, match="supersample"):
        anatomy_phantoms(2, 32, 0, supersample=3)
    assert anatomy_phantoms(0, 32, 0).shape == (0, 1, 32, 32)
