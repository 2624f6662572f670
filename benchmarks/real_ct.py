"""Sparse-view CT on real scans: the CT slices that ship with pydicom and pydicom-data.

    python benchmarks/real_ct.py                         # the bundled CT prior at its defaults
    python benchmarks/real_ct.py --model runs/ct.pt --figure docs/figures/real_ct.png
    python benchmarks/real_ct.py --model ct-anatomy --noise 0 --options '{"num_samples": 4}'

The slices are real patient CT (nobody here made them), imported with
:func:`scoreinv.datasets.read_dicom_ct` (HU through RescaleSlope / Intercept), mapped to [0, 1]
with the package's HU window and resized to 64² with anti-aliasing (padded to square with air).
They are a test set only: no prior is trained on them.

Rows: noise-free and Gaussian noise of 1% of each slice's sinogram peak, 23 views. Methods: FBP,
SIRT-300, TV (Chambolle–Pock, 500 iterations) with λ chosen on 8 validation anatomy phantoms at
the same noise level, and scoreinv at its defaults (``--model``). PSNR / SSIM with data range 1,
per slice and mean ± std. ``--options`` adds scoreinv rows with these JSON options of
:func:`scoreinv.posterior` (seed 0) beside the defaults. ``--figure`` draws truth, FBP, SIRT, TV and scoreinv per slice.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from quality import best_tv_weight, simulate

from scoreinv.checkpoint import load_model
from scoreinv.classical import sirt, tv_reconstruction
from scoreinv.datasets import phantoms
from scoreinv.datasets.dicom import ct_slice_to_unit, read_dicom_ct
from scoreinv.metrics import psnr, ssim
from scoreinv.reconstruct import posterior

# CT Image Storage files of pydicom and pydicom-data that decode without extra codecs: the test set.
SLICES = ["CT_small.dcm", "693_UNCR.dcm", "explicit_VR-UN.dcm", "J2K_pixelrep_mismatch.dcm"]
# The other real CT of those packages, from other patients than SLICES (693_UNCI / J2KR / J2KI are
# 693_UNCR again): a lumbar spine slice (JPEG Lossless) and the two frames of an enhanced head CT.
# A validation set to choose settings on when the procedural phantoms leave a choice open; never a test.
VALIDATION_SLICES = ["bad_sequence.dcm", "eCT_Supplemental.dcm"]
VALIDATION_SEED = 5_000_000
TV_WEIGHTS = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]


def real_slices(size: int, files: list[str] = SLICES) -> tuple[torch.Tensor, list[str]]:
    """(n, 1, size, size) in [0, 1] and the file names, for the shipped ``files`` that decode here."""
    from pydicom.data import get_testdata_file

    paths = [path for path in (get_testdata_file(name, download=False) for name in files) if path is not None]
    scans = read_dicom_ct(paths)
    images = [ct_slice_to_unit(item.hu, size) for item in scans.slices]
    names = [Path(item.source).name + (f"[{item.frame}]" if getattr(item, "frame", None) else "")
             for item in scans.slices]
    return torch.from_numpy(np.stack(images))[:, None], names


def tuned_tv_weight(noise: float, views: int, size: int, iterations: int) -> float:
    """TV's λ chosen on 8 validation anatomy phantoms at this noise level (quality.py's rule)."""
    validation = phantoms("anatomy", 8, size, seed=VALIDATION_SEED)
    return best_tv_weight(validation, noise, views, size, TV_WEIGHTS, iterations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ct-phantom")
    parser.add_argument("--views", type=int, default=23)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.01])
    parser.add_argument("--tv-iterations", type=int, default=500)
    parser.add_argument("--sirt-iterations", type=int, default=300)
    parser.add_argument("--options", action="append", default=[], help="JSON dict of posterior() options")
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()

    prior = load_model(args.model)
    size = prior.image_size
    truth, names = real_slices(size)
    print(f"# {len(truth)} real CT slices ({', '.join(names)}), {size}², {args.views} views, model "
          f"{args.model}; {platform.machine()}, {torch.get_num_threads()} torch threads\n")
    print("| noise | method | PSNR (dB) per slice | PSNR mean ± std | SSIM mean ± std | s / slice |")
    print("|---|---|---|---|---|---|")
    shown: dict[str, torch.Tensor] = {"truth": truth}
    for noise in args.noise:
        operator, y = simulate(truth, noise, args.views, size)
        tv_weight = tuned_tv_weight(noise, args.views, size, args.tv_iterations)
        methods = {
            "FBP": lambda: operator.pinv(y),
            f"SIRT-{args.sirt_iterations}": lambda: sirt(operator, y, args.sirt_iterations),
            f"TV (λ={tv_weight:g} on validation)": lambda: tv_reconstruction(operator, y, tv_weight,
                                                                              args.tv_iterations),
        }
        settings: dict = {}

        def scoreinv_default() -> torch.Tensor:
            result = posterior(y, operator, prior, progress=False)
            settings.update(result.settings, nfe=result.evaluations_per_item)
            return torch.as_tensor(result.mean)

        methods["scoreinv (defaults)"] = scoreinv_default
        for text in args.options:
            options = json.loads(text)
            methods[f"scoreinv {text}"] = (
                lambda options=options: torch.as_tensor(posterior(y, operator, prior, seed=0, progress=False,
                                                                  **options).mean))
        for label, method in methods.items():
            started = time.perf_counter()
            estimate = method().detach().cpu().clamp(0, 1)
            seconds = (time.perf_counter() - started) / len(truth)
            quality, structure = psnr(estimate, truth), ssim(estimate, truth)
            per_slice = " / ".join(f"{value:.1f}" for value in quality)
            print(f"| {noise:.0%} | {label} | {per_slice} | {quality.mean():.2f} ± {quality.std():.2f} | "
                  f"{structure.mean():.3f} ± {structure.std():.3f} | {seconds:.2f} |", flush=True)
            if noise == args.noise[-1]:
                shown[label.split(" (")[0]] = estimate
        print(f"\nscoreinv settings at {noise:.0%}: method {settings.get('method')}, {settings.get('num_samples')} × {settings.get('steps')} steps, "
              f"{settings.get('nfe')} score evaluations\n")
    if args.figure:
        figure(args.figure, shown, names, args.noise[-1])


def figure(path: Path, shown: dict[str, torch.Tensor], names: list[str], noise: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = len(names), len(shown)
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 1.9 * rows), squeeze=False)
    for r in range(rows):
        for c, (label, images) in enumerate(shown.items()):
            axis = axes[r, c]
            axis.imshow(images[r, 0].numpy(), cmap="gray", vmin=0.2, vmax=0.45)
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(label, fontsize=9)
            if c == 0:
                axis.set_ylabel(names[r], fontsize=7)
    fig.suptitle(f"real CT slices, 23 views, {noise:.0%} noise (display −400…350 HU)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
