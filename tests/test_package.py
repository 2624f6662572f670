"""The package's face: lazy public names, one version, the layout's import boundaries."""

import subprocess
import sys
import tomllib
from pathlib import Path

import scoreinv

ROOT = Path(__file__).resolve().parents[1]


def fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet) and return its stdout."""
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                               cwd=ROOT, timeout=120)
    return completed.stdout.strip()


def test_importing_the_data_package_loads_no_solver_sampler_or_reconstruction():
    loaded = fresh_python(
        "import sys, scoreinv.datasets\n"
        "print(' '.join(m for m in ('scoreinv.solvers', 'scoreinv.reconstruct', 'scoreinv.sampling') "
        "if m in sys.modules))")
    assert loaded == ""


def test_importing_the_package_loads_nothing_but_its_version():
    loaded = fresh_python("import sys, scoreinv\nprint(sorted(m for m in sys.modules if m.startswith('scoreinv')))")
    assert loaded == "['scoreinv', 'scoreinv._version']"


def test_every_public_name_resolves_and_dir_lists_it():
    for name in scoreinv.__all__:
        assert getattr(scoreinv, name) is not None, name
    assert set(scoreinv.__all__) <= set(dir(scoreinv))
    from scoreinv import GrayscaleOp, MaskOp, RadonOp, load_model, posterior  # noqa: F401


def test_reconstruct_is_the_function_whichever_import_comes_first():
    kinds = fresh_python(
        "from scoreinv.reconstruct import resolve_settings\n"
        "import scoreinv\n"
        "print(callable(scoreinv.reconstruct), scoreinv.reconstruct.__module__)")
    assert kinds == "True scoreinv.reconstruct"
    import scoreinv.reconstruct  # noqa: F401 (binds the submodule to the package, as any import does)

    assert callable(scoreinv.reconstruct) and scoreinv.reconstruct.__name__ == "reconstruct"


def test_unknown_names_raise_attribute_error():
    try:
        scoreinv.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("expected an AttributeError")


def test_the_version_lives_in_one_place():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "scoreinv._version.__version__"}
    from scoreinv._version import __version__

    assert scoreinv.__version__ == __version__
    assert project["project"]["scripts"]["scoreinv"] == "scoreinv.app.cli:main"


def test_the_data_package_holds_data_only_and_the_app_runs_batches():
    import scoreinv.app
    import scoreinv.datasets
    from scoreinv.app.batch import BatchSummary, reconstruct_h5, work_folder

    assert not {"reconstruct_h5", "BatchSummary", "work_folder"} & set(scoreinv.datasets.__all__)
    assert (scoreinv.app.reconstruct_h5, scoreinv.app.BatchSummary, scoreinv.app.work_folder) == (
        reconstruct_h5, BatchSummary, work_folder)
