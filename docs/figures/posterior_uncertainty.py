"""Makes docs/figures/posterior_uncertainty.png: the CT closed-form problem at 32², 16 views.

A Gaussian prior (squared-exponential covariance, ℓ = 5, benchmarks/_closed_form.py) with its
exact score, one prior draw as the ground truth, its noiseless 16-view sinogram; FBP;
``scoreinv.posterior`` with the RadonOp defaults (consistency, λ = 1, CG-20 final
projection, 500 steps, SNR 0.246) and 200 samples; the analytic posterior mean and per-pixel
std for comparison.   Run:  python docs/figures/posterior_uncertainty.py  (about 30 s)
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _closed_form import (
    analytic_posterior,
    correlated_prior,
    dense_matrix,
    posterior_errors,
)

import scoreinv
from scoreinv.operators import RadonOp

torch.set_num_threads(1)
side, views, samples = 32, 16, 200
prior = correlated_prior(side, 5.0)
operator = RadonOp(views, image_size=side)
x = prior.sample(1, torch.Generator().manual_seed(4)).float()
y = operator(x)
truth = analytic_posterior(prior, dense_matrix(operator), y, 0.0)
result = scoreinv.posterior(y[0], operator, prior, num_samples=samples, seed=0, progress=False)
mean, std = torch.as_tensor(result.mean), torch.as_tensor(result.std)
err = posterior_errors(mean.reshape(1, -1), std.reshape(1, -1), truth)
fbp = operator.pinv(y)[0, 0]

image = lambda v: v.reshape(side, side).double()
analytic_mean, analytic_std = image(truth.mean[0]), image(truth.std)
limit = float(max(x.abs().max(), analytic_mean.abs().max()))
std_max = float(max(std.max(), analytic_std.max()))

fig, ax = plt.subplots(2, 4, figsize=(15, 7.4), layout="constrained")
rmse = lambda v: float((v.double() - x[0, 0].double()).pow(2).mean().sqrt())
panels = [
    (ax[0, 0], x[0, 0], "ground truth (prior draw)"),
    (ax[0, 1], fbp, f"FBP, {views} views: RMSE {rmse(fbp):.3f}"),
    (ax[0, 2], mean[0], f"sample mean ({samples}): RMSE {rmse(mean[0]):.3f}"),
    (ax[0, 3], analytic_mean, f"analytic posterior mean: RMSE {rmse(analytic_mean):.3f}"),
]
for a, value, title in panels:
    shown = a.imshow(value, cmap="RdBu_r", vmin=-limit, vmax=limit)
    a.set_title(title)
fig.colorbar(shown, ax=ax[0, :].tolist(), shrink=0.8, label="value")
for a, value, title in [
    (ax[1, 0], std[0], "sampled per-pixel std"),
    (ax[1, 1], analytic_std, "analytic per-pixel std"),
    (ax[1, 2], (x[0, 0] - mean[0]).abs(), "|ground truth − sample mean|"),
]:
    shown = a.imshow(value, cmap="magma", vmin=0, vmax=std_max if "std" in title else None)
    a.set_title(title)
    fig.colorbar(shown, ax=a, shrink=0.8)
for a in ax.flat[:7]:
    a.axis("off")
profile = ax[1, 3]
for row, style in ((side // 2, "-"), (1, "--")):
    profile.plot(analytic_std[row], "k" + style, label=f"analytic, row {row}")
    profile.plot(std[0, row], "C1o" + style, markersize=3, label=f"sampled, row {row}")
prior_std = float(prior.covariance().diagonal().sqrt().mean())
profile.set_xlabel("column"); profile.set_ylabel("per-pixel std"); profile.set_ylim(0, 1.4 * std_max)
profile.set_title(f"std along two rows (prior std {prior_std:.2f})"); profile.legend(fontsize=8, ncol=2, loc="upper center")
fig.suptitle(f"Sparse-view CT on a Gaussian prior, {side}², {views} views (noiseless): mean err {err.mean:.3f}, "
             f"std err {err.std:.3f}, std ratio {err.ratio:.2f}, NFE {result.nfe}, {result.seconds:.0f} s")
out = Path(__file__).with_suffix(".png")
fig.savefig(out, dpi=80)
print(f"{out}: mean err {err.mean:.3f}, std err {err.std:.3f}, std ratio {err.ratio:.2f}, "
      f"NFE {result.nfe}, {result.seconds:.1f} s, settings {result.settings}")
