"""The ``scoreinv`` command line: parse, validate (pydantic), call the library.

    scoreinv train DATA.npy --out MODEL.pt [--config CONFIG.json] [--steps N] ...
    scoreinv sample MODEL.pt --n 16 --out samples.png|.npy [--method pc|ode] [--seed K]
    scoreinv likelihood MODEL.pt DATA.npy [--levels 256] [--exact] [--seed K]
    scoreinv data phantoms OUT.h5 --n N [--size S] [--family ellipses|chest|mixed] [--seed K]
    scoreinv data colour OUT.h5 --n N [--size S] [--seed K] [--sources histology retina]

DATA.npy holds images (N, C, H, W) as float32 in the model's value range. A user
mistake (missing file, bad shape, invalid setting) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from scoreinv.config import ModelConfig, TrainingConfig


class UserError(Exception):
    """A mistake in the command's input: reported as one line, exit code 2."""


def load_images(path: Path) -> torch.Tensor:
    """Images (N, C, H, W) from a .npy file, as float32; refuses NaN/inf and other shapes."""
    if not path.exists():
        raise UserError(f"data file not found: {path}")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UserError(f"{path} is not a readable .npy array: {error}") from error
    if array.ndim != 4:
        raise UserError(f"{path} must hold images of shape (N, C, H, W), got {array.shape}")
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise UserError(f"{path} must hold numbers, got dtype {array.dtype}")
    images = torch.from_numpy(np.ascontiguousarray(array)).float()
    if not torch.isfinite(images).all():
        raise UserError(f"{path} contains NaN or inf")
    return images


def read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    if not path.exists():
        raise UserError(f"config file not found: {path}")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON: {error}") from error
    unknown = set(content) - {"model", "training"}
    if unknown:
        raise UserError(f"{path}: unknown sections {sorted(unknown)}; expected 'model' and 'training'")
    return content


def command_train(args: argparse.Namespace) -> None:
    from scoreinv.models import ScoreModel
    from scoreinv.training import train

    images = load_images(args.data)
    config = read_config(args.config)
    model_section = dict(config.get("model", {}))
    unet = dict(model_section.get("unet", {}))
    unet.setdefault("image_size", images.shape[-1])
    unet.setdefault("channels", images.shape[1])
    model_section["unet"] = unet
    if args.sde:
        model_section["sde"] = {**model_section.get("sde", {}), "kind": args.sde}
    training_section = dict(config.get("training", {}))
    for flag, field in (("steps", "steps"), ("batch_size", "batch_size"), ("seed", "seed"),
                        ("learning_rate", "learning_rate"), ("checkpoint_every", "checkpoint_every")):
        value = getattr(args, flag)
        if value is not None:
            training_section[field] = value
    model_config = ModelConfig(**model_section)
    training_config = TrainingConfig(**training_section)
    if images.shape[-2] != images.shape[-1]:
        raise UserError(f"images must be square, got {images.shape[-2]}×{images.shape[-1]}")
    low, high = model_config.value_range
    if images.min() < low - 1e-6 or images.max() > high + 1e-6:
        raise UserError(
            f"{args.data} has values in [{images.min():.3g}, {images.max():.3g}], outside the "
            f"model's value_range {model_config.value_range}"
        )
    model = ScoreModel(model_config)
    result = train(model, images, training_config, checkpoint_path=args.out, resume=not args.restart,
                   device=args.device)
    losses = result.losses[-100:]
    summary = f"mean loss of the last {len(losses)} steps {sum(losses) / len(losses):.4f}" if losses else ""
    print(f"trained to step {result.step} in {result.seconds:.1f} s; {summary}; wrote {args.out}")


def command_sample(args: argparse.Namespace) -> None:
    from scoreinv.checkpoint import load_model
    from scoreinv.sampling import sample

    prior = load_model(args.model, device=args.device)
    samples = sample(prior, args.n, method=args.method, steps=args.steps, snr=args.snr, seed=args.seed)
    write_images(samples, args.out)
    print(f"wrote {args.n} samples to {args.out}")


def write_images(images: torch.Tensor, path: Path) -> None:
    """Images to .npy (raw) or .png (a grid, clipped to [0, 1])."""
    array = images.detach().cpu().numpy().astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, array)
        return
    if path.suffix != ".png":
        raise UserError(f"output must end in .npy or .png, got {path}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = array.shape[0]
    columns = min(8, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.2), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < count:
            item = np.clip(array[index], 0, 1)
            if item.shape[0] == 1:
                axis.imshow(item[0], cmap="gray", vmin=0, vmax=1)
            else:
                axis.imshow(item.transpose(1, 2, 0))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def command_likelihood(args: argparse.Namespace) -> None:
    from scoreinv.checkpoint import load_model
    from scoreinv.likelihood import dequantize, log_likelihood

    prior = load_model(args.model, device=args.device)
    images = load_images(args.data).to(next(prior.parameters()).device)
    generator = torch.Generator(device=images.device).manual_seed(args.seed)
    if args.dequantize:
        images = dequantize(images, args.levels, prior.value_range, generator)
    result = log_likelihood(prior, images, exact_divergence=args.exact, levels=args.levels, generator=generator)
    bpd = result.bpd
    print(f"bits/dim {bpd.mean():.4f} ± {bpd.std() if len(bpd) > 1 else 0.0:.4f} over {len(bpd)} images "
          f"(offset {result.offset:.3f} for {args.levels} levels on {tuple(prior.value_range)}, "
          f"{result.divergence} divergence, {result.nfe} evaluations, {result.seconds:.1f} s)")
    if args.out:
        args.out.write_text(json.dumps({"bpd": bpd.tolist(), "logp": result.logp.tolist(),
                                        "offset": result.offset, "nfe": result.nfe,
                                        "divergence": result.divergence}, indent=2))


def _check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    if path.is_dir():
        raise UserError(f"{path} is a folder; give a file name such as {path / 'data.h5'}")


def _report_written(path: Path, what: str, config: Any, seconds: float) -> None:
    from scoreinv.datasets import H5ImageDataset

    shape = H5ImageDataset(path).shape
    megabytes = path.stat().st_size / 2**20
    print(f"wrote {shape} {what} to {path} ({megabytes:.1f} MB, seed {config.seed}, {seconds:.1f} s)")


def _data_config(kind: type, **fields: Any) -> Any:
    """A data set configuration; its validation problems as one UserError line."""
    try:
        return kind(**fields)
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            where = ".".join(map(str, problem["loc"]))
            message = problem["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise UserError(f"invalid data set: {'; '.join(problems)}") from None


def command_demo(args: argparse.Namespace) -> None:
    from scoreinv.demo import run_demo

    if args.quick:
        args.images, args.steps, args.samples, args.sirt_iterations = 2, 20, 2, 50
    result = run_demo(args.out, model=args.model, n_images=args.images, views=args.views, noise=args.noise,
                      steps=args.steps, num_samples=args.samples, sirt_iterations=args.sirt_iterations,
                      seed=args.seed)
    print(f"\n{args.images} held-out phantoms, {args.views} views, {args.noise:.0%} sinogram noise\n")
    print(result.table())
    print(f"\nwrote {result.figure} and {result.report}")


def command_data_phantoms(args: argparse.Namespace) -> None:
    import time

    from scoreinv.config import PhantomDataConfig
    from scoreinv.datasets import write_data_h5

    config = _data_config(PhantomDataConfig, family=args.family, n=args.n, size=args.size, seed=args.seed,
                          block_size=args.block_size)
    _check_output(args.out, args.overwrite)
    started = time.perf_counter()
    write_data_h5(args.out, config, overwrite=args.overwrite, created_by="scoreinv data phantoms")
    _report_written(args.out, f"{config.family} phantoms", config, time.perf_counter() - started)


def command_data_colour(args: argparse.Namespace) -> None:
    import time

    from scoreinv.config import ColourDataConfig
    from scoreinv.datasets import write_data_h5

    config = _data_config(ColourDataConfig, sources=tuple(args.sources), n=args.n, size=args.size,
                          seed=args.seed, scale=tuple(args.scale), augment=not args.no_augment,
                          max_background=args.max_background, block_size=args.block_size)
    _check_output(args.out, args.overwrite)
    started = time.perf_counter()
    write_data_h5(args.out, config, overwrite=args.overwrite, created_by="scoreinv data colour")
    what = f"colour crops of {'+'.join(config.sources)}"
    _report_written(args.out, what, config, time.perf_counter() - started)


def build_parser() -> argparse.ArgumentParser:
    defaults = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(prog="scoreinv", description=__doc__.split("\n")[0],
                                     formatter_class=defaults)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a score model on a .npy of images",
                                formatter_class=defaults)
    train.add_argument("data", type=Path, help="images (N, C, H, W) in .npy")
    train.add_argument("--out", type=Path, required=True, help="checkpoint file (resumed if it exists)")
    train.add_argument("--config", type=Path, help='JSON {"model": ModelConfig, "training": TrainingConfig}')
    train.add_argument("--sde", choices=["ve", "vp", "subvp"], help="overrides the config's SDE kind")
    train.add_argument("--steps", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--learning-rate", type=float)
    train.add_argument("--checkpoint-every", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ...")
    train.set_defaults(handler=command_train)

    sampler = commands.add_parser("sample", help="draw unconditional samples", formatter_class=defaults)
    sampler.add_argument("model", help="checkpoint path or bundled model name")
    sampler.add_argument("--n", type=int, default=16)
    sampler.add_argument("--out", type=Path, default=Path("samples.png"), help=".png grid or .npy")
    sampler.add_argument("--method", choices=["pc", "ode"], default="pc")
    sampler.add_argument("--steps", type=int, default=1000)
    sampler.add_argument("--snr", type=float, default=0.16)
    sampler.add_argument("--seed", type=int, default=0)
    sampler.add_argument("--device", default=None)
    sampler.set_defaults(handler=command_sample)

    likelihood = commands.add_parser("likelihood", help="bits/dim of images under a model",
                                     formatter_class=defaults)
    likelihood.add_argument("model", help="checkpoint path or bundled model name")
    likelihood.add_argument("data", type=Path, help="images (N, C, H, W) in .npy")
    likelihood.add_argument("--levels", type=int, default=256, help="quantisation levels of the data")
    likelihood.add_argument("--dequantize", action="store_true", help="add uniform dequantisation noise")
    likelihood.add_argument("--exact", action="store_true", help="exact divergence instead of Hutchinson")
    likelihood.add_argument("--seed", type=int, default=0)
    likelihood.add_argument("--out", type=Path, help="write per-image results as JSON")
    likelihood.add_argument("--device", default=None)
    likelihood.set_defaults(handler=command_likelihood)
    demo = commands.add_parser("demo", help="sparse-view CT of held-out phantoms: FBP, SIRT, scoreinv",
                               formatter_class=defaults)
    demo.add_argument("--model", default="ct-phantom", help="bundled model name or checkpoint path")
    demo.add_argument("--out", type=Path, default=Path("scoreinv-demo"), help="folder for demo.png, demo.json")
    demo.add_argument("--images", type=int, default=4)
    demo.add_argument("--views", type=int, default=23)
    demo.add_argument("--noise", type=float, default=0.01, help="noise std / largest sinogram value")
    demo.add_argument("--steps", type=int, default=100,
                      help="sampler steps (reconstruct's default for noisy CT is 200; 100 keeps the demo near 3 min on 2 CPU cores)")
    demo.add_argument("--samples", type=int, default=2, help="posterior samples per image")
    demo.add_argument("--sirt-iterations", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quick", action="store_true", help="2 images, 20 steps: a smoke run")
    demo.set_defaults(handler=command_demo)

    data = commands.add_parser("data", help="generate an offline data set into an HDF5 file",
                               formatter_class=defaults)
    data_kinds = data.add_subparsers(dest="data_kind", required=True)
    phantom = data_kinds.add_parser("phantoms", help="CT phantoms (N, 1, S, S)", formatter_class=defaults)
    phantom.add_argument("out", type=Path, help="the HDF5 file to write")
    phantom.add_argument("--n", type=int, required=True, help="number of images")
    phantom.add_argument("--size", type=int, default=64, help="height = width, pixels")
    phantom.add_argument("--family", default="mixed", help="ellipses, chest or mixed (half each)")
    phantom.add_argument("--seed", type=int, default=0, help="one torch.Generator seed for the whole file")
    phantom.add_argument("--block-size", type=int, default=256, help="images generated at a time")
    phantom.add_argument("--overwrite", action="store_true", help="replace an existing file")
    phantom.set_defaults(handler=command_data_phantoms)
    colour = data_kinds.add_parser("colour", help="colour crops of histology / retina photographs (N, 3, S, S)",
                                   formatter_class=defaults)
    colour.add_argument("out", type=Path, help="the HDF5 file to write")
    colour.add_argument("--n", type=int, required=True, help="number of images")
    colour.add_argument("--size", type=int, default=64, help="height = width, pixels (at most 512)")
    colour.add_argument("--seed", type=int, default=0, help="one torch.Generator seed for the whole file")
    colour.add_argument("--sources", nargs="+", default=["histology", "retina"], help="histology and/or retina")
    colour.add_argument("--scale", type=float, nargs=2, default=[1.0, 1.0], metavar=("LOW", "HIGH"),
                        help="crop side / size drawn from U(LOW, HIGH), then resized to size")
    colour.add_argument("--max-background", type=float, default=0.1,
                        help="largest fraction of black background in a crop")
    colour.add_argument("--no-augment", action="store_true", help="no random flips / 90° rotations")
    colour.add_argument("--block-size", type=int, default=256, help="images generated at a time")
    colour.add_argument("--overwrite", action="store_true", help="replace an existing file")
    colour.set_defaults(handler=command_data_colour)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        print(f"scoreinv: error: invalid configuration: {problems}", file=sys.stderr)
        return 2
    except (UserError, ValueError, FileNotFoundError) as error:
        # Library messages may carry detail on later lines (torch's, say): the first says what is wrong.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"scoreinv: error: {first_line}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
