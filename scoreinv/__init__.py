"""scoreinv: score-based generative models for medical-imaging inverse problems.

The public face of the package::

    import scoreinv
    prior = scoreinv.load_model("path/to/model.pt")      # a trained prior (or GaussianPrior)
    x = scoreinv.sample(prior, 16, method="pc", seed=0)   # unconditional samples
    result = scoreinv.log_likelihood(prior, x)            # logp (nats), bits/dim, NFE
    op = scoreinv.RadonOp(23, image_size=prior.image_size)
    x_hat = scoreinv.reconstruct(sinogram, operator=op, model=prior, seed=0)
"""

__version__ = "0.1.0"

from scoreinv.checkpoint import load_model
from scoreinv.gaussian import GaussianPrior
from scoreinv.likelihood import LikelihoodResult, log_likelihood
from scoreinv.operators import GrayscaleOp, LinearOperator, MaskOp, RadonOp
from scoreinv.reconstruct import Posterior, posterior, reconstruct
from scoreinv.sampling import sample
from scoreinv.sde import SDE, SubVPSDE, VESDE, VPSDE

__all__ = [
    "__version__",
    "load_model",
    "reconstruct",
    "posterior",
    "Posterior",
    "RadonOp",
    "MaskOp",
    "GrayscaleOp",
    "LinearOperator",
    "sample",
    "log_likelihood",
    "LikelihoodResult",
    "GaussianPrior",
    "SDE",
    "VESDE",
    "VPSDE",
    "SubVPSDE",
]
