"""Pydantic models for every user-facing configuration.

Each model validates on construction and raises ``pydantic.ValidationError``
(a ``ValueError``) whose message names the offending field. Every model is
serialised as JSON into checkpoints and outputs (``model_dump_json``), so a
result says how it was made. Unknown fields are rejected, so a typo in a
configuration file is an error, not a silently ignored setting.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from scoreinv.operators.registry import operator_config_model
from scoreinv.sde import SDE, SubVPSDE, VESDE, VPSDE


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SDEConfig(StrictModel):
    """Which forward SDE, with its hyperparameters (see :mod:`scoreinv.sde`)."""

    kind: Literal["ve", "vp", "subvp"] = "ve"
    sigma_min: float = Field(0.01, gt=0, description="VE: noise std at t = 0")
    sigma_max: float = Field(50.0, gt=0, description="VE: noise std at t = T (prior std)")
    beta_min: float = Field(0.1, ge=0, description="VP / sub-VP: β(0)")
    beta_max: float = Field(20.0, gt=0, description="VP / sub-VP: β(T)")

    @model_validator(mode="after")
    def _ordered(self) -> "SDEConfig":
        if self.kind == "ve" and not self.sigma_min < self.sigma_max:
            raise ValueError(f"sigma_min ({self.sigma_min}) must be < sigma_max ({self.sigma_max})")
        if self.kind != "ve" and not self.beta_min < self.beta_max:
            raise ValueError(f"beta_min ({self.beta_min}) must be < beta_max ({self.beta_max})")
        return self

    def build(self) -> SDE:
        if self.kind == "ve":
            return VESDE(self.sigma_min, self.sigma_max)
        if self.kind == "vp":
            return VPSDE(self.beta_min, self.beta_max)
        return SubVPSDE(self.beta_min, self.beta_max)


class UNetConfig(StrictModel):
    """Architecture of the time-conditional U-Net (:class:`scoreinv.models.UNet`).

    The network has ``len(channel_multipliers)`` resolution levels; level k has
    ``base_channels * channel_multipliers[k]`` channels and works at
    ``image_size / 2**k`` pixels, so ``image_size`` must be divisible by
    ``2**(levels - 1)``. Self-attention is added at every level whose resolution
    (in pixels) is listed in ``attention_resolutions``.
    """

    image_size: int = Field(32, ge=4, description="height = width of the images, pixels")
    channels: int = Field(1, description="1 (grayscale) or 3 (RGB)")
    base_channels: int = Field(32, ge=4)
    channel_multipliers: tuple[int, ...] = Field((1, 2, 2), min_length=1)
    num_res_blocks: int = Field(2, ge=1, description="residual blocks per level")
    attention_resolutions: tuple[int, ...] = Field((), description="resolutions with self-attention")
    dropout: float = Field(0.0, ge=0, lt=1)
    fourier_scale: float = Field(16.0, gt=0, description="std of the random Fourier time frequencies")
    group_norm_groups: int = Field(8, ge=1, description="GroupNorm groups (reduced to divide the width)")
    extra_input_channels: int = Field(
        0, ge=0, description="input channels beside the image's (a patch prior's 2 position channels)")

    @model_validator(mode="after")
    def _consistent(self) -> "UNetConfig":
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if any(m < 1 for m in self.channel_multipliers):
            raise ValueError(f"channel_multipliers must be >= 1, got {self.channel_multipliers}")
        factor = 2 ** (len(self.channel_multipliers) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by 2**(levels-1) = {factor} "
                f"for {len(self.channel_multipliers)} levels"
            )
        valid = {self.image_size // 2**k for k in range(len(self.channel_multipliers))}
        unknown = set(self.attention_resolutions) - valid
        if unknown:
            raise ValueError(
                f"attention_resolutions {sorted(unknown)} are not resolutions of this U-Net {sorted(valid)}"
            )
        return self


class PatchConfig(StrictModel):
    """A patch prior: the U-Net scores ``unet.image_size``² patches given their position.

    The network's input is the noisy patch and two position channels, the coordinates (u, v) of
    each pixel centre in the whole image, in [−1, 1] (u = (j + ½)/N·2 − 1 along columns,
    v = (i + ½)/N·2 − 1 along rows). Their slope across the patch, 2/N per pixel, also tells the
    network the image size N, so one prior serves every N in [min_image_size, max_image_size]
    (:class:`scoreinv.models.ScoreModel` assembles the whole-image score from patches).
    """

    min_image_size: int = Field(64, ge=8, description="smallest whole-image size N it was trained for, pixels")
    max_image_size: int = Field(512, ge=8, description="largest whole-image size N it was trained for, pixels")

    @model_validator(mode="after")
    def _ordered(self) -> "PatchConfig":
        if self.min_image_size > self.max_image_size:
            raise ValueError(f"min_image_size ({self.min_image_size}) must be <= max_image_size "
                             f"({self.max_image_size})")
        return self


class ModelConfig(StrictModel):
    """Everything needed to rebuild a trained prior: SDE, network and data range.

    With ``patch`` set, the prior is a patch prior (:class:`PatchConfig`): ``unet.image_size`` is
    the patch size P and ``unet.extra_input_channels`` must be 2 (the position channels).
    """

    sde: SDEConfig = SDEConfig()
    unet: UNetConfig = UNetConfig()
    value_range: tuple[float, float] = Field((0.0, 1.0), description="range of the training data")
    preconditioning: Literal["std", "edm"] = Field(
        "std", description="std: s = UNet(x, t) / std(t); edm: Karras et al. 2022's c_skip, c_out, c_in, "
        "c_noise around a denoiser (see scoreinv.models.ScoreModel)")
    sigma_data: float = Field(0.5, gt=0, description="edm: the data's standard deviation σ_d")
    patch: PatchConfig | None = Field(None, description="a patch prior: scores patches given their position")

    @model_validator(mode="after")
    def _range(self) -> "ModelConfig":
        low, high = self.value_range
        if not low < high:
            raise ValueError(f"value_range must be (low, high) with low < high, got {self.value_range}")
        extra = self.unet.extra_input_channels
        if self.patch is not None and extra != 2:
            raise ValueError(f"a patch prior needs unet.extra_input_channels = 2 (the position channels), got {extra}")
        if self.patch is None and extra:
            raise ValueError(f"unet.extra_input_channels = {extra} needs a patch prior (patch=PatchConfig(...))")
        if self.patch is not None and self.patch.min_image_size < self.unet.image_size:
            raise ValueError(f"patch.min_image_size ({self.patch.min_image_size}) must be >= the patch size "
                             f"unet.image_size ({self.unet.image_size})")
        return self


class TrainingConfig(StrictModel):
    """Denoising score-matching training (see :func:`scoreinv.training.train`)."""

    steps: int = Field(10_000, ge=1, description="total optimiser steps")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(500, ge=0, description="linear learning-rate warm-up")
    grad_clip: float = Field(1.0, gt=0, description="max global gradient norm")
    ema_decay: float = Field(0.999, ge=0, lt=1)
    ema_warmup: bool = Field(
        True, description="EMA decay min(ema_decay, (1 + k) / (10 + k)) at step k, so the average "
        "forgets the initial weights early (with a fixed 0.999 they still weigh 0.999^k: 45% at k = 800)"
    )
    weighting: Literal["std2", "likelihood", "edm"] = Field(
        "std2", description="λ(t) = std(t)² (default), g(t)² (likelihood weighting), or edm: "
        "(σ² + σ_d²)/(σ σ_d)² on the denoiser's error, σ = std/mean coefficient"
    )
    noise_sampling: Literal["uniform", "lognormal"] = Field(
        "uniform", description="t ~ U(eps, T), or ln σ ~ N(lognormal_mean, lognormal_std²) (Karras et al. 2022) "
        "mapped to t, σ = std(t)/mean coefficient(t)")
    lognormal_mean: float = Field(-1.2, description="lognormal: mean of ln σ")
    lognormal_std: float = Field(1.2, gt=0, description="lognormal: std of ln σ")
    eps: float = Field(1e-5, gt=0, lt=1, description="smallest training time t")
    checkpoint_every: int = Field(1000, ge=1, description="write a checkpoint every K steps")
    seed: int = 0
    amp: bool = Field(True, description="bfloat16 autocast on CUDA (ignored on the CPU)")
    cpu_amp: bool = Field(
        False, description="bfloat16 autocast on the CPU too: on cores with AMX or AVX-512 BF16 the network's "
        "forward and backward pass run 2-3x faster; weights, optimiser and EMA stay float32"
    )


class PhantomDataConfig(StrictModel):
    """A generated CT phantom data set (:func:`scoreinv.datasets.write_phantoms_h5`).

    Generated ``block_size`` images at a time from one ``torch.Generator`` seeded with
    ``seed`` (torch uses its low 32 bits), so up to ``block_size`` images are exactly
    ``phantoms(family, n, size, seed)``; ``"mixed"`` is half ellipses, half chest per block.
    """

    kind: Literal["phantoms"] = "phantoms"
    family: Literal["ellipses", "chest", "mixed", "anatomy"] = "mixed"
    n: int = Field(ge=1, description="number of images")
    size: int = Field(64, ge=8, description="height = width, pixels")
    seed: int = Field(0, ge=0, lt=2**32)
    block_size: int = Field(256, ge=1, description="images generated (and held in memory) at a time")


class ColourDataConfig(StrictModel):
    """A data set of colour crops (:func:`scoreinv.datasets.colour_crops`), generated in blocks.

    Generated in blocks from one seeded generator as for phantoms: up to ``block_size``
    images are exactly ``colour_crops(n, size, seed, sources, ...)``.
    """

    kind: Literal["colour"] = "colour"
    sources: tuple[Literal["histology", "retina"], ...] = Field(("histology", "retina"), min_length=1)
    n: int = Field(ge=1, description="number of images")
    size: int = Field(64, ge=8, le=512, description="height = width, pixels")
    seed: int = Field(0, ge=0, lt=2**32)
    scale: tuple[float, float] = Field((1.0, 1.0), description="crop side / size drawn from U(low, high)")
    augment: bool = Field(True, description="random flips and 90° rotations")
    max_background: float = Field(0.1, ge=0, le=1, description="largest fraction of black background")
    block_size: int = Field(256, ge=1, description="images generated (and held in memory) at a time")

    @model_validator(mode="after")
    def _consistent(self) -> "ColourDataConfig":
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources must not repeat, got {list(self.sources)}")
        low, high = self.scale
        if not 0 < low <= high:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if round(self.size * high) > 512:
            raise ValueError(f"crops of up to {round(self.size * high)} pixels do not fit the 512-pixel sources")
        return self


FilterName = Literal["ram-lak", "shepp-logan", "cosine", "hann"]
#: The number formats the prior network may compute in while sampling (scoreinv.sampling.precision).
ScorePrecision = Literal["float32", "bfloat16"]


class ReconstructionSettings(StrictModel):
    """Sampler settings of a reconstruction: the one list of them.

    ``None`` is "not chosen": :func:`scoreinv.reconstruct.resolve_settings` picks the method
    (the solvers' policy, from the operator's capabilities, noise and image size), fills the
    fields that method reads from the policy, then from the method's own typed settings
    (``Method.settings_model``), and checks them there; the fields the method does not read stay
    None, so a resolved object names exactly what ran. Setting a field the method does not read
    is an error. :func:`scoreinv.posterior`, ``scoreinv
    reconstruct``, ``scoreinv batch`` and the batch runner all go through it; the command-line
    flags are generated from these fields, and the resolved object is stored in every output.
    ``method``, ``predictor`` and ``corrector`` name entries of their registries
    (``scoreinv.solvers.METHODS``, ``scoreinv.sampling.PREDICTORS`` / ``CORRECTORS``), which
    can be extended from outside the package, so they are checked when resolved.
    """

    method: str | None = Field(None, description="conditional sampler: consistency, replacement, guidance, ...")
    steps: int | None = Field(None, ge=1, description="sampler steps (one predictor + corrector each)")
    snr: float | None = Field(None, ge=0, description="Langevin corrector signal-to-noise ratio")
    weight: float | None = Field(None, ge=0, le=1, description="consistency λ")
    final_iterations: int | None = Field(
        None, ge=0, description="consistency: CG iterations of the final projection (0: the FBP-based replacement)")
    final_damping: float | None = Field(None, ge=0, description="damping of the final projection")
    step_filter: FilterName | None = Field(None, description="FBP window of a RadonOp's consistency steps")
    final_filter: FilterName | None = Field(None, description="FBP window of a RadonOp's final replacement step")
    noise_weight: float | None = Field(
        None, ge=0, description="κ of the noise-aware consistency gain (0: off; needs noise_std > 0)")
    guidance_scale: float | None = Field(None, ge=0, description="guidance ζ")
    guidance_max_ratio: float | None = Field(
        None, gt=0, description="guidance cap ρ: the guidance term at most ρ × the prior score's norm")
    eta: float | None = Field(None, ge=0, le=1, description="decomposed: DDIM stochasticity η (0 deterministic, 1 ancestral)")
    zeta: float | None = Field(None, ge=0, le=1, description="decomposed: share ζ of the next noise level drawn fresh each step (1: re-noise the estimate); replaces η's rule when set")
    cg_iterations: int | None = Field(None, ge=0, description="decomposed: CG iterations of the consistency step on x̂₀")
    projection_iterations: int | None = Field(
        None, ge=0, description="decomposed: CG iterations of the last consistency step and of those below "
        "projection_noise_level")
    projection_noise_level: float | None = Field(
        None, ge=0, description="decomposed: below this noise level σ_t (image units) a consistency step runs "
        "projection_iterations CG iterations, close to the projection onto A x = y (None: only the last step)")
    damping_weight: float | None = Field(
        None, ge=0, description="decomposed: w of the damping δ_t = w σ_y² / σ_t² of the consistency step (noisy data)")
    start_noise_level: float | None = Field(
        None, gt=0, description="decomposed: start the reverse process at this noise level σ_s (image units) from "
        "a noised data-consistent estimate instead of at T from the prior (None: at T)")
    start_iterations: int | None = Field(
        None, ge=0, description="decomposed: CG iterations of the estimate a start_noise_level start noises")
    start_estimate: Literal["data", "coarse"] | None = Field(
        None, description="decomposed: the estimate a start_noise_level start noises: 'data' (CG on A x = y from 0) "
        "or 'coarse' (a whole-image reconstruction at coarse_size², upsampled, then the same CG)")
    coarse_size: int | None = Field(
        None, ge=8, description="decomposed: image size of a 'coarse' start estimate's reconstruction")
    coarse_noise: float | None = Field(
        None, ge=0, description="decomposed: noise std a 'coarse' start assumes on the binned sinogram, as a fraction "
        "of its peak (the binning's mismatch)")
    time_grid: Literal["uniform", "log-sigma", "karras"] | None = Field(
        None, description="spacing of the sampler's time points (None: uniform)")
    score_precision: ScorePrecision | None = Field(
        None, description="number format of the prior network's convolutions and products: 'bfloat16' runs them "
        "under torch autocast (faster where the hardware computes in bfloat16; the score stays float32) "
        "(None: float32)")
    predictor: str | None = Field(None, description="predictor of the PC loop (decomposed: ddim)")
    corrector: str | None = Field(None, description="corrector of the PC loop (decomposed: none)")
    corrector_steps: int | None = Field(None, ge=0, description="corrector steps per sampler step")
    num_samples: int | None = Field(
        None, ge=1, description="posterior samples per item; the result is their mean (None: the operator "
        "family's choice, else 1)")
    seed: int = Field(0, ge=0, lt=2**63, description="seeds every random draw")


# --- The command line's configurations (``scoreinv <command> --config FILE``): one model per command.


#: A forward operator named on the command line or in a configuration file: ``kind`` (a
#: registered operator family: radon, mask, grayscale, ...), ``noise_std`` and the fields of every
#: family's spec, generated from the registered families; the default is 23-view CT (radon) (``scoreinv.operators.register_family``);
#: a field of another family than ``kind`` is an error, ``build(image_size, channels)`` makes the operator.
OperatorConfig = operator_config_model(default="radon")


class TrainRunConfig(StrictModel):
    """``scoreinv train --config``: the model to build and how to train it."""

    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()


class SampleConfig(StrictModel):
    """``scoreinv sample``: unconditional samples (:func:`scoreinv.sample`)."""

    n: int = Field(16, ge=1, description="number of samples")
    method: Literal["pc", "ode"] = Field("pc", description="predictor-corrector or probability-flow ODE")
    steps: int = Field(1000, ge=1, description="pc: sampler steps")
    snr: float = Field(0.16, ge=0, description="pc: Langevin corrector signal-to-noise ratio")
    predictor: Literal["none", "euler_maruyama", "reverse_diffusion", "ancestral"] = "reverse_diffusion"
    corrector: Literal["none", "langevin", "annealed_langevin"] = "langevin"
    corrector_steps: int = Field(1, ge=0, description="pc: corrector steps per sampler step")
    rtol: float = Field(1e-5, gt=0, description="ode: relative tolerance")
    atol: float = Field(1e-5, gt=0, description="ode: absolute tolerance")
    seed: int = Field(0, ge=0, lt=2**63, description="seeds every random draw")


class LikelihoodConfig(StrictModel):
    """``scoreinv likelihood``: bits/dim through the probability-flow ODE (:func:`scoreinv.log_likelihood`)."""

    levels: int = Field(256, ge=2, description="quantisation levels of the data (bits/dim offset)")
    dequantize: bool = Field(False, description="add uniform dequantisation noise first")
    exact: bool = Field(False, description="exact divergence instead of Hutchinson's estimate")
    probe: Literal["rademacher", "gaussian"] = Field("rademacher", description="Hutchinson probe")
    rtol: float = Field(1e-5, gt=0, description="ODE relative tolerance")
    atol: float = Field(1e-5, gt=0, description="ODE absolute tolerance")
    seed: int = Field(0, ge=0, lt=2**63, description="seeds the probe and the dequantisation")


class ReconstructConfig(StrictModel):
    """``scoreinv reconstruct``: the prior, the operator (``None``: from the .h5 input, or the
    default ``OperatorConfig`` for a .npy input) and the sampler settings."""

    model: str | None = Field(None, description="registered prior name or checkpoint path (None: the registered "
                              "prior for the operator's modality, channels and image size)")
    operator: OperatorConfig | None = None
    settings: ReconstructionSettings = ReconstructionSettings()


class BatchConfig(StrictModel):
    """``scoreinv batch``: HDF5 batch reconstruction (:func:`scoreinv.app.batch.reconstruct_h5`)."""

    model: str | None = Field(None, description="registered prior name or checkpoint path (None: the registered "
                              "prior for the operator's modality, channels and image size)")
    batch_size: int = Field(8, ge=1, description="items reconstructed at a time (per process)")
    settings: ReconstructionSettings = ReconstructionSettings()


class SimulateConfig(StrictModel):
    """``scoreinv data simulate``: measurements of the images of an HDF5 file."""

    operator: OperatorConfig = OperatorConfig()
    seed: int = Field(0, ge=0, lt=2**63, description="seeds the measurement noise")
