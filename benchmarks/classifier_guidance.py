"""Classifier guidance on the two bundled pairs, judged by a classifier that never saw noise.

    python benchmarks/classifier_guidance.py                     # test run: seed 0, held-out references
    python benchmarks/classifier_guidance.py --validate          # choose the scale: other seeds, training references

For each pair (``digits`` prior + ``digits-classifier``; ``ct-anatomy`` + ``ct-region-classifier``):

1. an independent judge, trained in this run on clean images only (scikit-learn's RBF support
   vector classifier on the pixels), and its accuracy on held-out clean images;
2. the time-dependent classifier's held-out accuracy against t (noise from the prior's SDE);
3. guided samples of every class at each scale: the share the judge assigns to the requested
   class (overall and per class) and, as a check against collapse onto a template, the mean
   pairwise distance within each class relative to that of real images of the class.

Validation (``--validate``) draws its samples from seeds 1000 + k and compares diversity with
*training* images; the test run draws from seed 0 and compares with *held-out* images, which
nothing was tuned on. The default scale stored in each bundled classifier was chosen from the
validation table (docs/classifier.md). Figures: one grid of samples per class and pair, and the
accuracy against t.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import limit_threads, machine_line  # noqa: E402

from scoreinv.checkpoint import load_model  # noqa: E402
from scoreinv.classifier import accuracy_by_time, load_classifier  # noqa: E402
from scoreinv.datasets.labelled import anatomy_labelled, digits_labelled  # noqa: E402
from scoreinv.sampling import ClassifierGuidedScore, pc_sample  # noqa: E402

TIMES = [1e-3, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def judge(train_x: torch.Tensor, train_y: torch.Tensor):
    """An RBF support-vector classifier on the flattened clean pixels: the independent judge."""
    from sklearn.svm import SVC

    model = SVC(kernel="rbf", gamma="scale", C=10.0)
    model.fit(train_x.flatten(1).numpy(), train_y.numpy())
    return model


def mean_pairwise_distance(images: torch.Tensor) -> float:
    """Mean L2 distance over all pairs of distinct images."""
    flat = images.flatten(1).double()
    distances = torch.cdist(flat, flat)
    n = flat.shape[0]
    return float(distances.sum() / (n * (n - 1)))


def guided_samples(prior, classifier, labels: torch.Tensor, scale: float, args, seed: int) -> tuple[torch.Tensor, float, int]:
    """One guided PC run for a batch with per-item labels: the samples (clamped to the value range), seconds, NFE."""
    guided = ClassifierGuidedScore(prior, classifier, labels, scale)
    options = {"eta": 1.0} if args.predictor == "ddim" else None
    result = pc_sample(guided, prior.sde, (labels.shape[0], prior.channels, prior.image_size, prior.image_size),
                       steps=args.steps, predictor=args.predictor, corrector="none", time_grid=args.time_grid,
                       predictor_options=options, generator=torch.Generator().manual_seed(seed), progress=False)
    low, high = prior.value_range
    return result.samples.clamp(low, high), result.seconds, result.nfe


def save_grid(samples: torch.Tensor, labels: torch.Tensor, names, columns: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(names)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 0.8 + 0.6, rows * 0.8 + 0.4), squeeze=False)
    for row, name in enumerate(names):
        chosen = samples[labels == row][:columns]
        for column in range(columns):
            axis = axes[row, column]
            axis.set_xticks([]), axis.set_yticks([])
            if column < chosen.shape[0]:
                axis.imshow(chosen[column, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            if column == 0:
                axis.set_ylabel(name, fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def save_accuracy_figure(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.2))
    for name, accuracies in curves.items():
        axis.plot(TIMES, accuracies, marker="o", label=name)
    axis.set_xlabel("diffusion time t")
    axis.set_ylabel("held-out accuracy of argmax p_t(c | x_t)")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def run_pair(name: str, prior, classifier, judge_model, references: torch.Tensor, reference_labels: torch.Tensor,
             scales: list[float], args, seed: int) -> list[dict]:
    """Guided samples of every class at each scale, judged; one row per scale."""
    classes = classifier.num_classes
    labels = torch.arange(classes).repeat_interleave(args.per_class[name])
    rows = []
    for scale in scales:
        samples, seconds, nfe = guided_samples(prior, classifier, labels, scale, args, seed)
        verdict = torch.from_numpy(judge_model.predict(samples.flatten(1).numpy()))
        per_class = [float((verdict[labels == c] == c).float().mean()) for c in range(classes)]
        ratios = [mean_pairwise_distance(samples[labels == c]) / mean_pairwise_distance(references[reference_labels == c])
                  for c in range(classes)]
        rows.append({"scale": scale, "accuracy": float((verdict == labels).float().mean()), "per_class": per_class,
                     "diversity": ratios, "seconds": seconds, "nfe": nfe, "samples": samples, "labels": labels})
        print(f"  [{name}] scale {scale:g}: judged as requested {rows[-1]['accuracy']:.3f}, worst class "
              f"{min(per_class):.3f}, diversity ratio min {min(ratios):.2f}, {seconds:.0f} s", flush=True)
    return rows


def print_rows(name: str, names, rows: list[dict], n: int) -> None:
    if not rows:
        return
    print(f"\n{name}: {n} samples per class, judged by the clean-image judge")
    print("| scale | judged as requested | worst class | per class | diversity ratio min / mean | NFE | seconds |")
    print("|---:|---:|---:|---|---|---:|---:|")
    for row in rows:
        per_class = " ".join(f"{names[c]}:{a:.2f}" for c, a in enumerate(row["per_class"]))
        print(f"| {row['scale']:g} | {row['accuracy']:.3f} | {min(row['per_class']):.3f} | {per_class} | "
              f"{min(row['diversity']):.2f} / {np.mean(row['diversity']):.2f} | {row['nfe']} | {row['seconds']:.0f} |")


def inpaint_table(prior, classifier, judge_model, test_x: torch.Tensor, test_y: torch.Tensor, args) -> None:
    """Both terms of the Bayes rule: inpaint held-out digits from their top half, unguided, under their
    own class and under another class (c + 5 mod 10); how the judge reads the completed digits."""
    import scoreinv
    from scoreinv.operators import MaskOp

    n = args.inpaint
    images, labels = test_x[:n], test_y[:n]
    mask = torch.zeros(8, 8)
    mask[:4] = 1  # the top four rows are known
    operator = MaskOp(mask)
    y = operator(images)
    print(f"\ninpainting {n} held-out digits from their top half (replacement, {args.inpaint_steps} steps, "
          f"scale {classifier.default_scale:g})")
    print("| guided to | judged as the true class | judged as the requested class | seconds |")
    print("|---|---:|---:|---:|")
    for title, requested in (("no class", None), ("the true class", labels), ("another class (c + 5)", (labels + 5) % 10)):
        started = time.perf_counter()
        options = {} if requested is None else {"classifier": classifier, "label": requested}
        result = scoreinv.posterior(y, operator, prior, steps=args.inpaint_steps, seed=0, progress=False, **options)
        verdict = torch.from_numpy(judge_model.predict(result.mean.clamp(0, 1).flatten(1).numpy()))
        asked = "–" if requested is None else f"{float((verdict == requested).float().mean()):.3f}"
        print(f"| {title} | {float((verdict == labels).float().mean()):.3f} | {asked} | "
              f"{time.perf_counter() - started:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=["digits", "ct"], choices=["digits", "ct"])
    parser.add_argument("--validate", action="store_true", help="validation run: seeds 1000+, training references")
    parser.add_argument("--scales", type=float, nargs="+", default=None,
                        help="guidance scales (default: the classifier's default and 0; validation: 0.5 1 2 4)")
    parser.add_argument("--digits-per-class", type=int, default=40)
    parser.add_argument("--ct-per-class", type=int, default=12)
    parser.add_argument("--steps", type=int, default=100, help="sampler steps (= score evaluations)")
    parser.add_argument("--predictor", default="ddim")
    parser.add_argument("--time-grid", default="log-sigma")
    parser.add_argument("--digits-classifier", default="digits-classifier")
    parser.add_argument("--ct-classifier", default="ct-region-classifier")
    parser.add_argument("--digits-prior", default="digits")
    parser.add_argument("--figures", type=Path, default=None, help="write the figures here (test run)")
    parser.add_argument("--api-check", action="store_true",
                        help="also run scoreinv.sample(load_model('digits'), 64, classifier=..., label=3, seed=0) as written")
    parser.add_argument("--inpaint", type=int, default=0, help="also inpaint this many held-out digits (0: skip)")
    parser.add_argument("--inpaint-steps", type=int, default=200)
    parser.add_argument("--accuracy-only", action="store_true",
                        help="only the judges and the accuracy against t (no sampling): seconds")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    limit_threads(args.threads)
    args.per_class = {"digits": args.digits_per_class, "ct": args.ct_per_class}
    seed = 1000 if args.validate else 0
    print(machine_line())
    print(f"run: {'validation' if args.validate else 'test'}, sample seed {seed}, sampler {args.predictor} "
          f"on a {args.time_grid} grid, {args.steps} steps, no corrector")
    curves = {}

    if "digits" in args.pairs:
        (train_x, train_y), (test_x, test_y), names = digits_labelled(test_fraction=0.2, seed=0)
        started = time.perf_counter()
        digits_judge = judge(train_x, train_y)
        judge_accuracy = float((torch.from_numpy(digits_judge.predict(test_x.flatten(1).numpy())) == test_y)
                               .float().mean())
        print(f"\ndigits judge (RBF SVC on {len(train_y)} clean training digits): held-out accuracy "
              f"{judge_accuracy:.4f} on {len(test_y)} digits ({time.perf_counter() - started:.1f} s)")
        prior = load_model(args.digits_prior)
        classifier = load_classifier(args.digits_classifier)
        curves["digits-classifier (359 held-out digits)"] = accuracy_by_time(classifier, test_x, test_y, TIMES)
        scales = args.scales or ([0.5, 1.0, 2.0, 4.0] if args.validate else [classifier.default_scale, 0.0])
        references = (train_x, train_y) if args.validate else (test_x, test_y)
        rows = [] if args.accuracy_only else run_pair("digits", prior, classifier, digits_judge, *references, scales,
                                                     args, seed)
        print_rows("digits", names, rows, args.digits_per_class)
        if args.figures is not None and not args.validate:
            for row in rows:
                save_grid(row["samples"], row["labels"], names, 10, args.figures / f"classifier_digits_scale{row['scale']:g}.png",
                          f"digits prior guided by digits-classifier, scale {row['scale']:g}")
        if args.inpaint and not args.accuracy_only:
            inpaint_table(prior, classifier, digits_judge, test_x, test_y, args)
        if args.api_check and not args.accuracy_only:
            import scoreinv

            started = time.perf_counter()
            x = scoreinv.sample(load_model("digits"), 64, classifier="digits-classifier", label=3, seed=0,
                                progress=False)
            verdict = digits_judge.predict(x.clamp(0, 1).flatten(1).numpy())
            print(f"\nscoreinv.sample(load_model('digits'), 64, classifier='digits-classifier', label=3, seed=0): "
                  f"shape {tuple(x.shape)}, judged 3: {float(np.mean(verdict == 3)):.3f}, "
                  f"{time.perf_counter() - started:.0f} s (defaults: 1000 PC steps + Langevin corrector)")

    if "ct" in args.pairs:
        train_x, train_y, names = anatomy_labelled(600, 64, seed=11)
        test_x, test_y, _ = anatomy_labelled(300, 64, seed=12)
        started = time.perf_counter()
        ct_judge = judge(train_x, train_y)
        judge_accuracy = float((torch.from_numpy(ct_judge.predict(test_x.flatten(1).numpy())) == test_y)
                               .float().mean())
        print(f"\nCT region judge (RBF SVC on {len(train_y)} clean anatomy slices, seed 11): held-out "
              f"accuracy {judge_accuracy:.4f} on {len(test_y)} slices (seed 12) ({time.perf_counter() - started:.1f} s)")
        prior = load_model("ct-anatomy")
        classifier = load_classifier(args.ct_classifier)
        curves["ct-region-classifier (300 held-out slices)"] = accuracy_by_time(classifier, test_x, test_y, TIMES)
        scales = args.scales or ([0.5, 1.0, 2.0, 4.0] if args.validate else [classifier.default_scale, 0.0])
        references = (train_x, train_y) if args.validate else (test_x, test_y)
        rows = [] if args.accuracy_only else run_pair("ct", prior, classifier, ct_judge, *references, scales, args,
                                                     seed)
        print_rows("CT regions (ct-anatomy prior)", names, rows, args.ct_per_class)
        if args.figures is not None and not args.validate:
            for row in rows:
                save_grid(row["samples"], row["labels"], names, 6, args.figures / f"classifier_ct_scale{row['scale']:g}.png",
                          f"ct-anatomy guided by ct-region-classifier, scale {row['scale']:g}")

    print("\nheld-out accuracy of the time-dependent classifiers against t")
    print("| t | " + " | ".join(curves) + " |")
    print("|---:|" + "---:|" * len(curves))
    for i, t in enumerate(TIMES):
        print(f"| {t:g} | " + " | ".join(f"{curve[i]:.3f}" for curve in curves.values()) + " |")
    if args.figures is not None and not args.validate:
        save_accuracy_figure(curves, args.figures / f"classifier_accuracy_by_time_{'_'.join(args.pairs)}.png")


if __name__ == "__main__":
    main()
