"""simulate_h5: images + simulated measurements, the operator rebuilt from the file alone."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from tiny_batch import SIZE, images

from scoreinv.datasets import operator_from_h5, read_h5_attributes, simulate_h5, write_images_h5
from scoreinv.operators import GrayscaleOp, MaskOp, RadonOp, operator_from_config

OPERATORS = {
    "radon": lambda: RadonOp(4, image_size=SIZE, noise_std=0.01),
    "mask-fraction": lambda: MaskOp(image_size=SIZE, fraction=0.4, generator=torch.Generator().manual_seed(2),
                                    noise_std=0.05),
    "mask-explicit": lambda: MaskOp(torch.rand(SIZE, SIZE, generator=torch.Generator().manual_seed(3)) > 0.5),
    "mask-boxes": lambda: MaskOp(image_size=SIZE, boxes=[(2, 3, 5, 6)]),
    "grayscale": lambda: GrayscaleOp(SIZE, noise_std=0.02),
}


def source(tmp_path, channels: int = 1, n: int = 5):
    return write_images_h5(tmp_path / "images.h5", images(n, channels), {"kind": "test"})


@pytest.mark.parametrize("name", list(OPERATORS))
def test_round_trip_rebuilds_the_operator_and_does_not_depend_on_the_block_size(tmp_path, name):
    operator = OPERATORS[name]()
    clean = source(tmp_path, operator.in_shape[0])
    one = simulate_h5(clean, tmp_path / "a.h5", operator, seed=4, block_size=2, progress=False)
    two = simulate_h5(clean, tmp_path / "b.h5", operator, seed=4, block_size=5, progress=False)
    with h5py.File(one, "r") as a, h5py.File(two, "r") as b, h5py.File(clean, "r") as c:
        x = torch.from_numpy(np.asarray(a["images"]))
        y = torch.from_numpy(np.asarray(a["measurements"]))
        assert np.array_equal(a["images"], c["images"])
        assert y.shape == (5, *operator.out_shape)
        assert np.array_equal(a["measurements"], b["measurements"])
        assert ("operator_mask" in a) == (name in ("mask-fraction", "mask-explicit"))

    rebuilt = operator_from_h5(one)
    assert type(rebuilt) is type(operator) and rebuilt.noise_std == operator.noise_std
    probe = torch.randn(3, *operator.in_shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(rebuilt(probe), operator(probe))
    clean_y = operator(x)
    if operator.noise_std > 0:
        noise = (y - clean_y)[clean_y != 0] if isinstance(operator, MaskOp) else y - clean_y
        assert 0.5 * operator.noise_std < float(noise.std()) < 1.5 * operator.noise_std
    else:
        assert torch.equal(y, clean_y)
    if isinstance(operator, MaskOp):  # unknown pixels stay zero, noise or not
        assert (y[:, :, operator.mask[0] == 0] == 0).all()

    attributes = read_h5_attributes(one)
    assert attributes["created_by"] == "scoreinv.datasets.simulate_h5"
    assert attributes["config"]["seed"] == 4 and attributes["config"]["source_config"] == {"kind": "test"}


def test_the_seed_chooses_the_noise(tmp_path):
    clean = source(tmp_path)
    operator = OPERATORS["radon"]()
    a = simulate_h5(clean, tmp_path / "a.h5", operator, seed=0, progress=False)
    b = simulate_h5(clean, tmp_path / "b.h5", operator, seed=1, progress=False)
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert not np.array_equal(fa["measurements"], fb["measurements"])


def test_a_mask_needs_its_mask_back():
    """The configuration carries the mask (packed); one written without it needs the mask given."""
    operator = OPERATORS["mask-fraction"]()
    assert torch.equal(operator_from_config(operator.config()).mask, operator.mask)
    written_before = {k: v for k, v in operator.config().items() if k not in ("mask_packed", "mask_shape")}
    with pytest.raises(ValueError, match="cannot be rebuilt from its configuration alone"):
        operator_from_config(written_before)
    assert torch.equal(operator_from_config(written_before, mask=operator.mask.numpy()).mask, operator.mask)
    with pytest.raises(ValueError, match="mask_sha256 differs"):
        operator_from_config(operator.config(), mask=1 - operator.mask)
    assert torch.equal(operator_from_config(operator.config(), mask=operator.mask).mask, operator.mask)


def test_bad_input_gets_a_clear_error(tmp_path):
    operator = OPERATORS["radon"]()
    with pytest.raises(FileNotFoundError, match="HDF5 file not found"):
        simulate_h5(tmp_path / "missing.h5", tmp_path / "out.h5", operator, progress=False)
    no_images = tmp_path / "no_images.h5"
    with h5py.File(no_images, "w") as handle:
        handle["measurements"] = np.zeros((2, 1, 4, 23), dtype=np.float32)
    with pytest.raises(ValueError, match="has no 'images' data set"):
        simulate_h5(no_images, tmp_path / "out.h5", operator, progress=False)
    clean = source(tmp_path)
    with pytest.raises(ValueError, match=r"images of shape \(5, 1, 16, 16\) do not fit the operator, which "
                                         r"expects \(N, 1, 32, 32\)"):
        simulate_h5(clean, tmp_path / "out.h5", RadonOp(4, image_size=32), progress=False)
    assert not (tmp_path / "out.h5").exists()
    out = simulate_h5(clean, tmp_path / "out.h5", operator, progress=False)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        simulate_h5(clean, out, operator, progress=False)
    assert simulate_h5(clean, out, operator, progress=False, overwrite=True) == out
