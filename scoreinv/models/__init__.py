"""Score networks: the time-conditional U-Net, the score model (U-Net / std), EMA of weights."""

from scoreinv.models.ema import EMA
from scoreinv.models.score_model import ScoreModel
from scoreinv.models.unet import UNet

__all__ = ["UNet", "ScoreModel", "EMA"]
