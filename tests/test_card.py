"""The package card: the README's first code block runs as written and beats FBP."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def first_python_block() -> str:
    match = re.search(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert match, "README.md has no python code block"
    return match.group(1)


def test_the_first_block_is_the_card_call():
    assert "scoreinv.reconstruct(sinogram, operator=RadonOp(23))" in first_python_block()


@pytest.mark.slow
def test_the_card_call_on_a_held_out_phantom_beats_fbp_by_3_db():
    from scoreinv.metrics import psnr
    from scoreinv.operators import RadonOp

    namespace: dict = {}
    exec(compile(first_python_block(), str(README), "exec"), namespace)  # the block, verbatim
    sinogram, x_hat, truth = namespace["sinogram"], namespace["x_hat"], namespace["image"]
    assert isinstance(sinogram, np.ndarray) and sinogram.shape == (23, 91)
    assert isinstance(x_hat, np.ndarray) and x_hat.shape == (64, 64)
    truth = np.asarray(truth, dtype=np.float32).reshape(64, 64)
    fbp = RadonOp(23, image_size=64).pinv(torch.from_numpy(sinogram)[None, None])[0, 0].numpy()
    gain = psnr(x_hat[None, None], truth[None, None]) - psnr(fbp[None, None], truth[None, None])
    assert float(np.mean(gain)) >= 3.0


def test_a_sinogram_no_bundled_prior_fits_is_refused_with_what_exists():
    import scoreinv
    from scoreinv import RadonOp

    sinogram = np.zeros((23, 46), dtype=np.float32)  # 46 detectors: 32² images, below every bundled prior
    with pytest.raises(ValueError, match=r"46 detectors.*32×32.*ct-phantom.*ct-patch.*scoreinv train"):
        scoreinv.reconstruct(sinogram, operator=RadonOp(23))


@pytest.mark.slow
def test_the_card_call_reconstructs_a_128_slice_with_the_patch_prior():
    """182 detectors: a 128² image, reconstructed by the bundled patch prior well above FBP."""
    import torch

    import scoreinv
    from scoreinv import RadonOp
    from scoreinv.datasets import phantoms
    from scoreinv.metrics import psnr

    image = phantoms("anatomy", 1, 128, seed=10**6)
    sinogram = RadonOp(23)(image)[0, 0].numpy()
    assert sinogram.shape == (23, 182)
    x_hat = scoreinv.reconstruct(sinogram, operator=RadonOp(23))
    assert isinstance(x_hat, np.ndarray) and x_hat.shape == (128, 128)
    fbp = RadonOp(23, image_size=128).pinv(torch.from_numpy(sinogram)[None, None]).clamp(0, 1)
    ours = psnr(torch.from_numpy(x_hat)[None, None].clamp(0, 1), image).item()
    assert ours > psnr(fbp, image).item() + 3
