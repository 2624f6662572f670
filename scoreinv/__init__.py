"""scoreinv: score-based generative models for medical-imaging inverse problems.

The public face of the package::

    import scoreinv
    prior = scoreinv.load_model("path/to/model.pt")      # a trained prior (or GaussianPrior)
    x = scoreinv.sample(prior, 16, method="pc", seed=0)   # unconditional samples
    x3 = scoreinv.sample(scoreinv.load_model("digits"), 64, classifier="digits-classifier", label=3, seed=0)
    result = scoreinv.log_likelihood(prior, x)            # logp (nats), bits/dim, NFE
    op = scoreinv.RadonOp(23, image_size=prior.image_size)
    x_hat = scoreinv.reconstruct(sinogram, operator=op, model=prior, seed=0)

The names are loaded on first use (PEP 562), so importing one part of the package
(``scoreinv.datasets``, say) does not load the samplers, the solvers or the networks.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from scoreinv._version import __version__

# public name -> the module that defines it
_PUBLIC = {
    "load_model": "scoreinv.checkpoint",
    "reconstruct": "scoreinv.reconstruct",
    "posterior": "scoreinv.reconstruct",
    "Posterior": "scoreinv.reconstruct",
    "RadonOp": "scoreinv.operators",
    "MaskOp": "scoreinv.operators",
    "GrayscaleOp": "scoreinv.operators",
    "LinearOperator": "scoreinv.operators",
    "sample": "scoreinv.generation",
    "log_likelihood": "scoreinv.likelihood",
    "LikelihoodResult": "scoreinv.likelihood",
    "GaussianPrior": "scoreinv.gaussian",
    "SDE": "scoreinv.sde",
    "VESDE": "scoreinv.sde",
    "VPSDE": "scoreinv.sde",
    "SubVPSDE": "scoreinv.sde",
}

__all__ = ["__version__", *_PUBLIC]

if TYPE_CHECKING:
    from scoreinv.checkpoint import load_model
    from scoreinv.gaussian import GaussianPrior
    from scoreinv.likelihood import LikelihoodResult, log_likelihood
    from scoreinv.operators import GrayscaleOp, LinearOperator, MaskOp, RadonOp
    from scoreinv.reconstruct import Posterior, posterior, reconstruct
    from scoreinv.generation import sample
    from scoreinv.sde import SDE, SubVPSDE, VESDE, VPSDE


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first access and keep it on the package."""
    module = _PUBLIC.get(name)
    if module is None and name.endswith("Op") and name.isidentifier():
        # an operator family's class (every family module registers itself in scoreinv.operators)
        operators = importlib.import_module("scoreinv.operators")
        if any(family.operator.__name__ == name for family in operators.FAMILIES.values()):
            module = "scoreinv.operators"
    if module is None:
        raise AttributeError(f"module 'scoreinv' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    loaded = {name for name, value in globals().items()
              if isinstance(value, types.ModuleType) and value.__name__.startswith(f"{__name__}.")}
    return sorted({*__all__, *loaded})


class _Package(types.ModuleType):
    """The package's module type: a public name is never replaced by the submodule of that name.

    Importing a submodule binds it as an attribute of its package. ``scoreinv.reconstruct``
    is both a function and a module; whichever code imports the module first (``from
    scoreinv.reconstruct import resolve_settings``), the package attribute stays the function.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if (isinstance(value, types.ModuleType) and name in _PUBLIC
                and value.__name__ == f"{self.__name__}.{name}"):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
