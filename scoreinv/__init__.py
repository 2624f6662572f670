"""scoreinv: score-based generative models for medical-imaging inverse problems.

The public face of the package::

    import scoreinv
    prior = scoreinv.load_model("path/to/model.pt")      # a trained prior (or GaussianPrior)
    x = scoreinv.sample(prior, 16, method="pc", seed=0)   # unconditional samples
    result = scoreinv.log_likelihood(prior, x)            # logp (nats), bits/dim, NFE
"""

__version__ = "0.1.0"

from scoreinv.checkpoint import load_model
from scoreinv.gaussian import GaussianPrior
from scoreinv.likelihood import LikelihoodResult, log_likelihood
from scoreinv.sampling import sample
from scoreinv.sde import SDE, SubVPSDE, VESDE, VPSDE

__all__ = [
    "__version__",
    "load_model",
    "sample",
    "log_likelihood",
    "LikelihoodResult",
    "GaussianPrior",
    "SDE",
    "VESDE",
    "VPSDE",
    "SubVPSDE",
]
