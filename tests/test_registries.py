"""One rule in one place: registries refuse a taken name, one default prior rule, one atomic writer."""

import os
import stat

import pytest
import torch
from conftest import tiny_model

from scoreinv import checkpoint
from scoreinv.operators import OPERATORS, GrayscaleOp, MaskOp, RadonOp, clear_matrix_cache, register_operator
from scoreinv.registries import register
from scoreinv.sampling import CORRECTORS, PREDICTORS
from scoreinv.sampling.correctors import LangevinCorrector, register_corrector
from scoreinv.sampling.predictors import ReverseDiffusionPredictor, register_predictor
from scoreinv.solvers import METHODS, register_method
from scoreinv.solvers.methods import Consistency


def test_register_refuses_a_taken_or_empty_name_and_leaves_the_entry():
    table = {"a": 1}
    assert register(table, "b", 2, "thing") == 2 and table == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match=r"a thing named 'a' is already registered \(1\)"):
        register(table, "a", 3, "thing")
    with pytest.raises(ValueError, match="non-empty string name"):
        register(table, "", 3, "thing")
    assert table == {"a": 1, "b": 2}


def test_every_registry_refuses_a_duplicate_name():
    before = (dict(OPERATORS), dict(METHODS), dict(PREDICTORS), dict(CORRECTORS), dict(checkpoint.PRIORS))
    with pytest.raises(ValueError, match="operator type named 'RadonOp' is already registered"):
        register_operator("RadonOp", RadonOp.from_config)

    class Another(Consistency):
        pass

    with pytest.raises(ValueError, match="method named 'consistency' is already registered"):
        register_method(Another)

    class Predictor(ReverseDiffusionPredictor):
        pass

    with pytest.raises(ValueError, match="predictor named 'reverse_diffusion' is already registered"):
        register_predictor(Predictor)

    class Corrector(LangevinCorrector):
        pass

    with pytest.raises(ValueError, match="corrector named 'langevin' is already registered"):
        register_corrector(Corrector)
    with pytest.raises(ValueError, match="prior named 'ct-anatomy' is already registered"):
        checkpoint.register_prior("ct-anatomy", "elsewhere.pt", modality="ct", channels=1, image_size=64)
    assert before == (dict(OPERATORS), dict(METHODS), dict(PREDICTORS), dict(CORRECTORS), dict(checkpoint.PRIORS))


def test_default_prior_for_follows_modality_channels_and_size():
    assert checkpoint.default_prior_for(RadonOp(23, 64)) == "ct-anatomy"
    assert checkpoint.default_prior_for(GrayscaleOp(64)) == "color-histology"
    assert checkpoint.default_prior_for(RadonOp(23), (1, 23, 363)) == "ct-patch"  # the size from the detectors
    with pytest.raises(ValueError, match=r"no registered prior fits a sinogram of 46 detectors .*1-channel 32×32 "
                                         r"images; .*\(1, 23, 91\) \(91 detectors, 64×64 images: ct-anatomy"):
        checkpoint.default_prior_for(RadonOp(23, 32))
    with pytest.raises(ValueError, match=r"64×48 images \(they are square\)"):
        checkpoint.default_prior_for(MaskOp(image_size=(64, 48), fraction=0.5))


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_checkpoints_and_the_matrix_cache_get_the_mode_of_every_other_output(tmp_path):
    from scoreinv.atomic import atomic_path

    with atomic_path(tmp_path / "reference.bin") as temporary:
        temporary.write_bytes(b"x")
    expected = _mode(tmp_path / "reference.bin")
    umask = os.umask(0)
    os.umask(umask)
    assert expected == 0o666 & ~umask
    checkpoint.save_checkpoint(tmp_path / "model.pt", tiny_model())
    clear_matrix_cache()  # a geometry held in memory is not written again
    RadonOp(3, 6, cache_dir=tmp_path / "matrices").build()
    written = [tmp_path / "model.pt", *sorted((tmp_path / "matrices").iterdir())]
    assert len(written) == 2 and [_mode(path) for path in written] == [expected] * 2
    assert not [p for p in tmp_path.rglob("*.tmp")]
    assert torch.equal(RadonOp(3, 6, cache_dir=tmp_path / "matrices")(torch.ones(1, 1, 6, 6)),
                       RadonOp(3, 6)(torch.ones(1, 1, 6, 6)))
