"""The anatomy family: seeded, in range, every region, tissues at their HU, and more than piecewise constant."""

import math

import pytest
import torch
import torch.nn.functional as F

from scoreinv.config import PhantomDataConfig
from scoreinv.datasets.anatomy import CLINICAL_FIELDS, DEFAULT_REGIONS, LABELS, REGIONS, _Canvas, anatomy_phantoms
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
    regions = [DEFAULT_REGIONS[i % 3] for i in range(9)]
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


# ------------------------------------------------------------------------------------------------------------
# clinical-size options: field of view, detail, arms, neck and shoulder regions


def test_defaults_draw_the_images_they_always_drew():
    plain = anatomy_phantoms(3, 64, 0)
    explicit = anatomy_phantoms(3, 64, 0, region=("head", "thorax", "abdomen"), field_of_view=1.0, detail=False,
                                arms=0.0)
    assert torch.equal(plain, explicit)
    # values of the generator before these options existed (a changed random stream moves them by far more)
    assert plain.double().sum().item() == pytest.approx(1700.04454, abs=1e-2)
    assert plain[0, 0, 32, 32].item() == pytest.approx(0.339085, abs=1e-4)
    assert plain[1, 0, 40, 20].item() == pytest.approx(0.100409, abs=1e-4)
    assert DEFAULT_REGIONS == ("head", "thorax", "abdomen") and REGIONS[:3] == DEFAULT_REGIONS


def test_new_regions_leave_the_other_regions_images_unchanged():
    thorax = anatomy_phantoms(2, 48, 1, region="thorax")
    for extra in ("neck", "shoulder"):
        mixed = anatomy_phantoms(4, 48, 1, region=("thorax", extra))
        assert torch.equal(mixed[0::2], thorax)
        assert not torch.equal(mixed[1::2], thorax)


def test_a_zoomed_field_is_the_centre_of_the_unzoomed_image():
    # pixel centres of a 64² field of view 0.5 are those of the centre 64² of a 128² field of view 1
    zoomed = anatomy_phantoms(3, 64, 5, field_of_view=0.5)
    centre = anatomy_phantoms(3, 128, 5)[..., 32:96, 32:96]
    unzoomed = anatomy_phantoms(3, 64, 5)
    assert (zoomed - centre).abs().mean() < 0.01  # only the pixel-scale textures differ
    assert (zoomed - unzoomed).abs().mean() > 0.1
    # a wider field shows the head smaller: its area in pixels scales as 1 / field_of_view²
    heads = [(anatomy_phantoms(2, 96, 3, region="head", field_of_view=f) > hu_to_unit(-500.0)).sum((1, 2, 3))
             for f in (1.0, 2.0)]
    assert torch.allclose(heads[1].double() / heads[0].double(), torch.full((2,), 0.25, dtype=torch.float64),
                          rtol=0.05)


def test_field_of_view_ranges_are_drawn_per_image_and_seeded():
    first = anatomy_phantoms(4, 48, 2, region="head", field_of_view=(0.6, 1.4))
    assert torch.equal(first, anatomy_phantoms(4, 48, 2, region="head", field_of_view=(0.6, 1.4)))
    areas = (first > hu_to_unit(-500.0)).sum((1, 2, 3)).double()
    assert areas.max() / areas.min() > 1.2  # different zooms (the heads themselves differ by less)
    per_region = anatomy_phantoms(2, 48, 2, region=("head", "thorax"), field_of_view={"thorax": 0.5})
    assert torch.equal(per_region[0], anatomy_phantoms(1, 48, 2, region="head")[0])
    assert torch.equal(per_region[1:], anatomy_phantoms(2, 48, 2, region=("head", "thorax"), field_of_view=0.5)[1:])
    assert set(CLINICAL_FIELDS) == set(REGIONS)


def test_small_vessels_keep_their_partial_volume_at_any_field_of_view():
    # the windowed renderer of many small capsules agrees with the whole-image one
    for field_of_view in (1.0, (0.5, 1.3)):
        canvas = _Canvas(3, 100, 4, torch.Generator().manual_seed(0), field_of_view)
        generator = torch.Generator().manual_seed(1)
        x0, y0 = torch.rand(3, 20, generator=generator) * 1.6 - 0.8, torch.rand(3, 20, generator=generator) * 1.6 - 0.8
        x1 = x0 + 0.05 * torch.randn(3, 20, generator=generator)
        y1 = y0 + 0.05 * torch.randn(3, 20, generator=generator)
        radius = 0.02 * torch.rand(3, 20, generator=generator)
        whole, windowed = canvas.segments(x0, y0, x1, y1, radius), canvas.stamps(x0, y0, x1, y1, radius)
        assert (whole - windowed).abs().max() < 1e-4 and whole.sum() > 100
    # a vessel's area in normalised units does not depend on the zoom: coverage sums scale as 1 / pixel²
    x0, y0 = torch.full((1, 1), 0.1), torch.full((1, 1), -0.2)
    areas = []
    for field_of_view in (1.0, 0.5):
        canvas = _Canvas(1, 128, 4, torch.Generator().manual_seed(0), field_of_view)
        pixel_area = (2 * field_of_view / 128) ** 2
        areas.append(float(canvas.stamps(x0, y0, x0 + 0.3, y0 + 0.1, torch.full((1, 1), 0.004)).sum()) * pixel_area)
    assert areas[0] == pytest.approx(areas[1], rel=0.02)
    assert areas[0] == pytest.approx(2 * 0.004 * (0.3**2 + 0.1**2) ** 0.5 + math.pi * 0.004**2, rel=0.05)


def test_detail_adds_trabeculae_small_vessels_and_fat_planes_on_the_same_anatomy():
    regions = ("thorax", "abdomen")
    plain, labels = anatomy_phantoms(4, 256, 2, region=regions, field_of_view=0.6, return_labels=True)
    detail, detail_labels = anatomy_phantoms(4, 256, 2, region=regions, field_of_view=0.6, detail=True,
                                             return_labels=True)
    small = anatomy_phantoms(2, 64, 2, region=regions, field_of_view=(0.6, 1.2), detail=True, arms=0.5)
    assert torch.equal(small, anatomy_phantoms(2, 64, 2, region=regions, field_of_view=(0.6, 1.2), detail=True,
                                               arms=0.5))
    assert (detail - plain).abs().mean() < 0.01  # the same anatomy
    plain_hu, detail_hu = unit_to_hu(plain), unit_to_hu(detail)
    # trabecular web: the same mean and an in-range median, with a stronger texture than the plain mottle
    bone = interior(labels, "cancellous_bone") & interior(detail_labels, "cancellous_bone")
    for i in range(4):
        web, mottle = detail_hu[i][bone[i]], plain_hu[i][bone[i]]
        assert 150 <= web.median() <= 500 and web.std() > 1.25 * mottle.std(), (i, web.median(), web.std())
    # small vessels and bronchi in the lungs (thorax images 0 and 2)
    lung = interior(labels, "lung")
    for i in (0, 2):
        changed = (detail_hu[i][lung[i]] > plain_hu[i][lung[i]] + 100).float().mean()
        assert changed > 0.02, changed
    # fat planes: muscle of the wall that became fat-like
    muscle = interior(labels, "muscle")
    for i in range(4):
        fatter = (detail_hu[i][muscle[i]] < plain_hu[i][muscle[i]] - 60).sum()
        assert fatter > 20, (i, fatter)


def test_arms_beside_the_trunk():
    regions = ("thorax", "abdomen")
    with_arms, labels = anatomy_phantoms(6, 128, 4, region=regions, field_of_view=1.4, arms=1.0, return_labels=True)
    without, plain_labels = anatomy_phantoms(6, 128, 4, region=regions, field_of_view=1.4, return_labels=True)
    marrow = LABELS.index("marrow")
    assert all((labels[i] == marrow).any() for i in range(6))  # every arm has its long bones' fatty marrow
    assert not (plain_labels == marrow).any()
    # the arms lie beside the body: the tissue spans at least two arm widths (2 × 2 × 36 mm) more columns
    def columns(x):
        return (unit_to_hu(x) > -500).any(2).sum((1, 2))

    pixel_mm = 1.4 * 400 / 128
    assert (columns(with_arms) - columns(without) > 2 * 2 * 36 / pixel_mm - 4).all()
    # HU of the new tissues: fatty marrow (inner pixels of the shaft, at 256²) and the arm's muscle
    fine, fine_labels = anatomy_phantoms(2, 192, 4, region="thorax", field_of_view=1.3, arms=1.0, return_labels=True)
    fine_hu = unit_to_hu(fine)
    pure = interior(fine_labels, "marrow")
    assert pure.sum() > 5 and -130 <= fine_hu[pure].median() <= 30
    # the probability is honoured: about half the slices have arms; the others are exactly the armless slices
    some = anatomy_phantoms(32, 32, 0, region="thorax", arms=0.5, field_of_view=1.4)
    none = anatomy_phantoms(32, 32, 0, region="thorax", field_of_view=1.4)
    count = sum(not torch.equal(some[i], none[i]) for i in range(32))
    assert 8 <= count <= 24, count


def test_neck_and_shoulder_tissues_at_their_hounsfield_units():
    images, labels = anatomy_phantoms(8, 128, 2, region=("neck", "shoulder"), return_labels=True)
    hu = unit_to_hu(images)
    for i in range(8):
        names = {LABELS[k] for k in labels[i].unique().tolist()}
        expected = {"air", "cortical_bone", "cancellous_bone", "muscle", "fat", "vessel", "skin", "csf"}
        assert expected <= names, (i, expected - names)
        if i % 2 == 0:
            assert "lung" not in names and "table" not in names  # the neck: no lung, no table
        assert hu[i].max() > 900
    thyroid = interior(labels, "thyroid")
    medians = [hu[i][thyroid[i]].median().item() for i in range(8) if thyroid[i].sum() >= 10]
    assert medians and all(60 <= m <= 240 for m in medians), medians  # +70…+130, enhanced up to +100 more
    shoulder_lung = interior(labels, "lung")
    lungs = [hu[i][shoulder_lung[i]].median().item() for i in range(1, 8, 2) if shoulder_lung[i].sum() >= 10]
    assert lungs and all(-900 <= m <= -700 for m in lungs)
    # the humeral heads: shoulders have far more cancellous bone than the neck
    bone = (labels == LABELS.index("cancellous_bone")).sum((1, 2, 3))
    assert (bone[1::2] > 2 * bone[0::2]).all()


def test_bad_clinical_options():
    for bad in (0.0, 5.0, (1.2, 0.8), "wide", (0.5, 1.0, 2.0), {"knee": 1.0}):
        with pytest.raises(ValueError, match="field_of_view"):
            anatomy_phantoms(1, 32, 0, field_of_view=bad)
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="arms"):
            anatomy_phantoms(1, 32, 0, arms=bad)
    with pytest.raises(TypeError, match="detail"):
        anatomy_phantoms(1, 32, 0, detail="yes")
