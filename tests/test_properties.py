"""Property-based tests (hypothesis) of the input boundary: every outcome is a valid output or a
clean error.

* ``reconstruct`` / ``posterior`` on measurement arrays of any shape, dtype and values (NaN, inf,
  huge, empty batches), as numpy or torch: either a finite result of the documented shape and
  kind, or a ValueError / TypeError with a message; never another exception, never NaN out.
* the command line on generated arguments: exit 0 with a finite output, or exit 1 / 2 with one
  ``scoreinv: error:`` line and no output file (not even a temporary one).

Tiny problems (a 6² Gaussian prior with its exact score, 5 decomposed steps; the 16² test
network for the command line). Profiles in conftest.py: the default runs in seconds,
``HYPOTHESIS_PROFILE=ci`` ten times as many examples.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tiny_batch import data_file, tiny_checkpoint

from scoreinv import posterior, reconstruct
from scoreinv.app.cli import main
from scoreinv.gaussian import GaussianPrior
from scoreinv.operators import RadonOp
from scoreinv.sde import VESDE

OPERATOR = RadonOp(3, image_size=6)  # measurements (1, 3, 9) of (1, 6, 6) images
PRIOR = GaussianPrior(VESDE(0.01, 10.0), torch.full((1, 6, 6), 0.5), torch.full((1, 6, 6), 0.05))
OPTIONS = {"method": "decomposed", "steps": 5, "seed": 0, "progress": False}

VALID_SHAPES = {(1, 3, 9): "item", (3, 9): "bare", **{(b, 1, 3, 9): "batch" for b in range(0, 3)}}
WRONG_SHAPES = [(), (9,), (3, 8), (2, 3, 9), (1, 1, 1, 3, 9), (1, 2, 3, 9), (2, 1, 9, 3)]
REAL = [np.float16, np.float32, np.float64, np.int16, np.int32, np.int64, np.uint8]
OTHER = [np.int8, np.bool_, np.complex64]
TORCH_DTYPES = {np.dtype(t) for t in (np.float16, np.float32, np.float64, np.int16, np.int32, np.int64, np.uint8,
                                      np.int8, np.bool_, np.complex64)}


@st.composite
def measurements(draw):
    """A measurement array: a shape that fits or not, any dtype, values with NaN, inf and extremes."""
    shape = draw(st.sampled_from(list(VALID_SHAPES)) | st.sampled_from(WRONG_SHAPES))
    dtype = np.dtype(draw(st.sampled_from(REAL + OTHER)))
    if dtype.kind == "f":
        elements = st.floats(width=8 * dtype.itemsize, allow_nan=True, allow_infinity=True) | st.floats(
            -3, 3, width=8 * dtype.itemsize)
    elif dtype.kind == "c":
        elements = st.complex_numbers(max_magnitude=10, allow_nan=False, allow_infinity=False, width=64)
    else:
        elements = None  # the dtype's whole range
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    as_torch = draw(st.booleans()) and dtype in TORCH_DTYPES
    return (torch.from_numpy(array) if as_torch else array), shape, dtype


def expected_shape(shape: tuple[int, ...], samples: int | None = None) -> tuple[int, ...]:
    layout = VALID_SHAPES[shape]
    image = (6, 6) if layout == "bare" else (1, 6, 6)
    lead = (shape[0],) if layout == "batch" else ()
    return lead + ((samples,) if samples else ()) + image


def refuses_cleanly(call) -> str:
    """Run ``call``; a ValueError / TypeError is a clean refusal (its message returned), a result
    is returned as is; anything else fails the test."""
    try:
        return call()
    except (ValueError, TypeError) as error:
        assert str(error).strip(), f"{type(error).__name__} without a message"
        return str(error)


def finite(value) -> bool:
    return bool(torch.isfinite(torch.as_tensor(value)).all())


@given(measurements())
def test_reconstruct_gives_a_finite_image_or_a_clean_error(case):
    y, shape, dtype = case
    note(f"shape {shape}, dtype {dtype}, {type(y).__name__}")
    result = refuses_cleanly(lambda: reconstruct(y, OPERATOR, PRIOR, **OPTIONS))
    values = np.asarray(y.numpy() if isinstance(y, torch.Tensor) else y)
    must_refuse = (shape not in VALID_SHAPES or dtype.kind in "cb" or dtype == np.int8
                   or (shape in VALID_SHAPES and VALID_SHAPES[shape] == "batch" and shape[0] == 0)
                   or (dtype.kind == "f" and not np.isfinite(values).all()))
    if must_refuse:
        assert isinstance(result, str), f"accepted {shape} {dtype}"
        if dtype.kind == "f" and shape in VALID_SHAPES and shape[0] != 0 and not np.isfinite(values).all():
            assert "NaN or inf" in result
        return
    if isinstance(result, str):  # a valid input may still be refused for a stated reason: extreme values
        assert "beyond the float32 range" in result or "reconstruction diverged" in result, result
        return
    assert type(result) is type(y)
    assert tuple(result.shape) == expected_shape(shape)
    assert finite(result), "a finite measurement gave a non-finite reconstruction without an error"


@given(measurements(), st.integers(1, 3))
def test_posterior_gives_finite_mean_std_and_samples_or_a_clean_error(case, samples):
    y, shape, dtype = case
    result = refuses_cleanly(lambda: posterior(y, OPERATOR, PRIOR, num_samples=samples, **OPTIONS))
    if isinstance(result, str):
        return
    assert tuple(result.mean.shape) == tuple(result.std.shape) == expected_shape(shape)
    assert tuple(result.samples.shape) == expected_shape(shape, samples)
    assert finite(result.mean) and finite(result.std) and finite(result.samples)
    assert bool((torch.as_tensor(result.std) >= 0).all())


# --- the command line -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("properties")
    return {"checkpoint": tiny_checkpoint(folder / "tiny.pt"), "data": data_file(folder, n=3)}


JUNK = st.text(alphabet="0123456789-:.aZ ", max_size=6)
FLAGS = {
    "--steps": st.integers(-2, 8).map(str) | JUNK,
    "--num-samples": st.integers(-1, 3).map(str) | JUNK,
    "--seed": st.integers(-2, 2**64).map(str) | JUNK,
    "--method": st.sampled_from(["decomposed", "consistency", "replacement", "guidance", "magic", ""]),
    "--device": st.sampled_from(["cpu", "bogus", "cuda:7", "meta", ""]),
    "--items": st.sampled_from(["0:2", "1", "2:0", "0:100", "-1", "a", "5", "::2"]),
    "--batch-size": st.integers(-1, 4).map(str) | JUNK,
    "--views": st.integers(-1, 5).map(str),
    "--cg-iterations": st.integers(-1, 3).map(str),
    "--eta": st.sampled_from(["0", "0.5", "1", "-1", "nan", "inf", "x"]),
}
COMMAND_FLAGS = {"reconstruct": ["--steps", "--num-samples", "--seed", "--method", "--device", "--items", "--views",
                                 "--cg-iterations", "--eta"],
                 "batch": ["--steps", "--num-samples", "--seed", "--method", "--device", "--batch-size",
                           "--cg-iterations", "--eta"]}


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(sorted(COMMAND_FLAGS)))
    chosen = draw(st.lists(st.sampled_from(COMMAND_FLAGS[command]), max_size=4, unique=True))
    flags = []
    for flag in chosen:
        flags += [flag, draw(FLAGS[flag])]
    if "--steps" not in chosen:
        flags += ["--steps", "5"]  # the default of 50-1000 steps is not what this test is about
    return command, flags


@settings(max_examples=max(10, settings.default.max_examples // 4))  # each example may run the sampler
@given(command_lines())
def test_the_command_line_writes_a_finite_output_or_prints_one_error_line(cli_files, capsys, case):
    command, flags = case
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / ("out.npy" if command == "reconstruct" else "out.h5")
        argv = [command, str(cli_files["data"]), str(out), "--model", str(cli_files["checkpoint"]), *flags]
        note(" ".join(argv))
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse: a usage mistake
            code = exit_.code
        captured = capsys.readouterr()
        if code == 0:
            assert out.exists()
            if command == "reconstruct":
                assert np.isfinite(np.load(out)).all()
            return
        assert code in (1, 2), code
        lines = [line for line in captured.err.splitlines() if line.startswith("scoreinv: ")]
        assert len(lines) == 1 and lines[0].startswith("scoreinv: error: "), captured.err
        assert "Traceback" not in captured.err
        if code == 2:
            leftovers = [path.name for path in Path(folder).iterdir()]
            assert leftovers == [], leftovers
