"""scoreinv: score-based generative models for medical-imaging inverse problems.

The public face of the package: the SDEs, sampling, likelihoods, model loading.
"""

from scoreinv.sde import SDE, SubVPSDE, VESDE, VPSDE
from scoreinv.gaussian import GaussianPrior

__version__ = "0.1.0"

__all__ = ["SDE", "VESDE", "VPSDE", "SubVPSDE", "GaussianPrior", "__version__"]
