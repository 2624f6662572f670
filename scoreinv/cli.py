"""The ``scoreinv`` command line: parse, validate (pydantic), call the library.

    scoreinv train DATA.npy|.h5 --out MODEL.pt [--config FILE] [--steps N] [--batch-size B] [--seed K] ...
    scoreinv sample MODEL [--out samples.png|.npy] [--config FILE] [--n 16] [--method pc|ode] [--steps N] [--seed K]
    scoreinv reconstruct MEAS.npy|.h5 OUT.npy|.png [--model NAME|PATH] [--config FILE] [--items 0:10]
        [--operator radon|mask|grayscale] [--views 23] [--noise-std S] [--fraction F]
        [--method M] [--steps N] [--num-samples M] [--seed K] [--device D] [--overwrite]
    scoreinv batch IN.h5 OUT.h5 [--model NAME|PATH] [--config FILE] [--steps N] [--batch-size B]
        [--num-samples M] [--seed K] [--device D] [--overwrite]
    scoreinv likelihood MODEL DATA.npy|.h5 [--config FILE] [--levels 256] [--exact] [--items 0:10] [--out R.json]
    scoreinv demo [--quick] [--model NAME|PATH] [--out FOLDER]
    scoreinv data phantoms OUT.h5 --n N [--size S] [--family ellipses|chest|mixed] [--seed K] [--config FILE]
    scoreinv data colour OUT.h5 --n N [--size S] [--seed K] [--sources histology retina] [--config FILE]
    scoreinv data simulate IN.h5 OUT.h5 [--operator radon|mask|grayscale] [--views 23] [--noise-std S]
        [--fraction F] [--seed K] [--config FILE] [--overwrite]

MODEL is a bundled prior (ct-phantom, color-histology) or a checkpoint path. A command with
settings takes ``--config FILE`` (.toml or .json), validated by its pydantic model in
scoreinv.config; flags override the file, the file overrides the defaults, and what ran is
stored with the output. ``torchrun --nproc_per_node=K -m scoreinv train|batch ...`` runs on K
processes. A user mistake (missing or unreadable file, bad shape, invalid setting, unknown
key) prints one line ``scoreinv: error: ...`` and exits 2. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError

from scoreinv import files
from scoreinv.config import (
    BatchConfig,
    ColourDataConfig,
    LikelihoodConfig,
    OperatorConfig,
    PhantomDataConfig,
    ReconstructConfig,
    ReconstructionSettings,
    SampleConfig,
    SDEConfig,
    SimulateConfig,
    TrainingConfig,
    TrainRunConfig,
)


class UserError(Exception):
    """A mistake in the command's input: reported as one line, exit code 2."""


def describe(error: ValidationError) -> str:
    """A pydantic error as one line: ``where: what`` per problem, unknown keys named."""
    problems = []
    for problem in error.errors():
        where = ".".join(map(str, problem["loc"]))
        if problem["type"] == "extra_forbidden":
            problems.append(f"unknown key {where!r}")
            continue
        message = problem["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def read_config_file(path: Path | None) -> dict[str, Any]:
    """The table of a .toml or .json configuration file (empty without one)."""
    if path is None:
        return {}
    if not path.exists():
        raise UserError(f"config file not found: {path}")
    if path.is_dir():
        raise UserError(f"config file {path} is a folder")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise UserError(f"config file {path} must end in .toml or .json")
    try:
        text = path.read_text(encoding="utf-8")
        content = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not a text file ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path} is not valid TOML: {error}") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(content, dict):
        raise UserError(f"{path} must hold a table of settings, got {type(content).__name__}")
    return content


def _put(content: dict[str, Any], dotted: str, value: Any, *, replace: bool, source: str) -> None:
    *parents, last = dotted.split(".")
    node = content
    for depth, name in enumerate(parents):
        if node.get(name) is None:
            node[name] = {}
        if not isinstance(node[name], dict):
            where = ".".join(parents[:depth + 1])
            raise UserError(f"{source}: {where!r} must be a table of settings, got {node[name]!r}")
        node = node[name]
    if replace or last not in node:
        node[last] = value


def configure(kind: type[BaseModel], path: Path | None, flags: dict[str, Any],
              defaults: dict[str, Any] | None = None) -> Any:
    """Validate ``kind`` from its defaults < ``defaults`` (from the data) < the file < the flags.

    ``flags`` and ``defaults`` map dotted field paths (``"settings.steps"``) to values; a
    flag that was not given is ``None`` and leaves the file's value.
    """
    source = str(path) if path is not None else "flags"
    content = read_config_file(path)
    for dotted, value in (defaults or {}).items():
        _put(content, dotted, value, replace=False, source=source)
    for dotted, value in flags.items():
        if value is not None:
            _put(content, dotted, value, replace=True, source=source)
    try:
        return kind.model_validate(content)
    except ValidationError as error:
        where = f" ({path} and flags)" if path is not None else ""
        raise UserError(f"invalid configuration{where}: {describe(error)}") from None


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default: argparse's own, or the pydantic default an option states itself.

    Options that override a configuration file default to ``None`` (not given) in argparse;
    their help text carries the model's default instead.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or "default:" in text:
            return text
        return super()._get_help_string(action)


def setting(parser: argparse.ArgumentParser, flag: str, model: type[BaseModel], field: str, **options: Any) -> None:
    """An option overriding ``field`` of ``model``; its help states the field's default."""
    info = model.model_fields[field]
    text = options.pop("help", None) or info.description or field.replace("_", " ")
    if info.is_required():
        shown = "required"
    elif info.default is None and model is ReconstructionSettings:
        shown = "per operator family, see docs/reconstruct.md"
    elif isinstance(info.default, tuple):
        shown = " ".join(map(str, info.default))
    else:
        shown = info.default
    parser.add_argument(flag, default=None, help=f"{text} (default: {shown})".replace("%", "%%"), **options)


def _training_data(path: Path) -> tuple[Any, tuple[int, ...], tuple[float, float]]:
    """Images to train on (a tensor, or a lazy data set for a large .h5), their shape and value range."""
    from scoreinv.datasets import H5ImageDataset

    if path.suffix.lower() in (".h5", ".hdf5") and path.is_file():
        dataset = H5ImageDataset(path)
        low, high = files.value_range(lambda: files.h5_image_blocks(path))
        if 4 * torch.Size(dataset.shape).numel() > 2**30:  # more than 1 GiB stays on disk, read per batch
            return dataset, dataset.shape, (low, high)
    images = files.read_images(path)
    return images, tuple(images.shape), files.value_range(images)


def command_train(args: argparse.Namespace) -> None:
    from scoreinv.distributed import world
    from scoreinv.models import ScoreModel
    from scoreinv.training import train

    data, shape, (found_low, found_high) = _training_data(args.data)
    flags = {"model.sde.kind": args.sde, "training.steps": args.steps, "training.batch_size": args.batch_size,
             "training.seed": args.seed, "training.learning_rate": args.learning_rate,
             "training.checkpoint_every": args.checkpoint_every}
    config = configure(TrainRunConfig, args.config, flags,
                       defaults={"model.unet.image_size": shape[-1], "model.unet.channels": shape[1]})
    if shape[-2] != shape[-1]:
        raise UserError(f"images must be square, got {shape[-2]}×{shape[-1]}")
    low, high = config.model.value_range
    if found_low < low - 1e-6 or found_high > high + 1e-6:
        raise UserError(f"{args.data} has values in [{found_low:.3g}, {found_high:.3g}], outside the "
                        f"model's value_range {config.model.value_range}")
    model = ScoreModel(config.model, seed=config.training.seed)
    result = train(model, data, config.training, checkpoint_path=args.out, resume=not args.restart,
                   device=args.device)
    losses = result.losses[-100:]
    summary = f"mean loss of the last {len(losses)} steps {sum(losses) / len(losses):.4f}" if losses else ""
    if world().is_main:  # under torchrun every process runs this command: one summary line
        print(f"trained to step {result.step} in {result.seconds:.1f} s; {summary}; wrote {args.out}")


def command_sample(args: argparse.Namespace) -> None:
    from scoreinv.checkpoint import load_model
    from scoreinv.sampling import sample

    config = configure(SampleConfig, args.config, {"n": args.n, "method": args.method, "steps": args.steps,
                                                   "snr": args.snr, "seed": args.seed})
    record = files.companion(args.out, "", ".json")
    for path in (args.out, record):
        files.check_output(path, (".npy", ".png") if path == args.out else (".json",), args.overwrite)
    prior = load_model(args.model, device=args.device)
    samples = sample(prior, config.n, method=config.method, steps=config.steps, predictor=config.predictor,
                     corrector=config.corrector, snr=config.snr, corrector_steps=config.corrector_steps,
                     rtol=config.rtol, atol=config.atol, seed=config.seed)
    files.write_images(args.out, samples)
    files.write_json(record, {"command": "sample", "model": args.model, "config": config})
    print(f"wrote {config.n} samples to {args.out} (configuration in {record})")


def _check_fits(images: torch.Tensor, model: Any, path: Path) -> None:
    expected = (model.channels, model.image_size, model.image_size)
    if tuple(images.shape[1:]) != expected:
        raise UserError(f"{path} holds images of shape {tuple(images.shape[1:])}, the model was trained "
                        f"on {expected}")


def command_likelihood(args: argparse.Namespace) -> None:
    from scoreinv.checkpoint import load_model
    from scoreinv.likelihood import dequantize, log_likelihood

    config = configure(LikelihoodConfig, args.config, {"levels": args.levels, "dequantize": args.dequantize,
                                                       "exact": args.exact, "seed": args.seed})
    if args.out is not None:
        files.check_output(args.out, (".json",), overwrite=True)
    prior = load_model(args.model, device=args.device)
    images = files.read_images(args.data, files.parse_items(args.items))
    _check_fits(images, prior, args.data)
    images = images.to(next(prior.parameters()).device)
    generator = torch.Generator(device=images.device).manual_seed(config.seed)
    if config.dequantize:
        images = dequantize(images, config.levels, prior.value_range, generator)
    result = log_likelihood(prior, images, exact_divergence=config.exact, probe=config.probe, levels=config.levels,
                            rtol=config.rtol, atol=config.atol, generator=generator)
    bpd = result.bpd
    spread = float(bpd.std()) if len(bpd) > 1 else 0.0
    print(f"bits/dim {bpd.mean():.4f} ± {spread:.4f} over {len(bpd)} images "
          f"(offset {result.offset:.3f} for {config.levels} levels on {tuple(prior.value_range)}, "
          f"{result.divergence} divergence, {result.nfe} evaluations, {result.seconds:.1f} s)")
    if args.out is not None:
        files.write_json(args.out, {
            "bpd_mean": float(bpd.mean()), "bpd_std": spread, "bpd": bpd.tolist(), "logp": result.logp.tolist(),
            "offset": result.offset, "nfe": result.nfe, "divergence": result.divergence,
            "model": args.model, "data": str(args.data), "items": args.items, "config": config,
        })


def command_reconstruct(args: argparse.Namespace) -> None:
    from scoreinv.checkpoint import load_model
    from scoreinv.reconstruct import posterior

    flags = {"model": args.model, **_operator_flags(args), **_settings_flags(args)}
    config = configure(ReconstructConfig, args.config, flags)
    samples = config.settings.num_samples
    outputs = [args.out, files.companion(args.out, "", ".json")]
    if samples > 1:
        outputs.insert(1, files.companion(args.out, "_std"))
    for path in outputs:
        files.check_output(path, (".json",) if path.suffix == ".json" else (".npy", ".png"), args.overwrite)
    measurements, operator, indices = files.read_measurements(args.measurements, files.parse_items(args.items))
    if operator is not None and config.operator is not None:
        raise UserError(f"{args.measurements} states the operator that made it: drop the operator flags "
                        "and the [operator] section")
    model = load_model(config.model, device=args.device)
    if operator is None:
        if config.operator is None:
            config = config.model_copy(update={"operator": OperatorConfig()})
        operator = config.operator.build(model.image_size, model.channels)
    if indices is None:  # a .npy input: its items are numbered from 0, one item alone is item 0
        batched = measurements.ndim == len(operator.out_shape) + 1
        indices = list(range(measurements.shape[0])) if batched else [0]
    # Item i is seeded from (seed, i, sample), as in `scoreinv batch`: the same item gives the same
    # result whatever else is reconstructed with it.
    result = posterior(measurements, operator, model, **config.settings.model_dump(), device=args.device,
                       item_seeds=indices)
    if args.out.suffix.lower() == ".npy":
        files.write_npy(args.out, result.mean)
        if samples > 1:
            files.write_npy(outputs[1], result.std)
    else:
        files.write_grid(args.out, result.mean)
        if samples > 1:  # the std is small next to the images: scaled so that its largest value is white
            files.write_grid(outputs[1], result.std, scale=max(float(result.std.max()), 1e-12))
    files.write_json(outputs[-1], {
        "command": "reconstruct", "measurements": str(args.measurements), "items": args.items, "config": config,
        "operator": operator.config(), "settings": result.settings, "nfe": result.nfe, "seconds": result.seconds,
    })
    count = 1 if result.mean.ndim == 3 else result.mean.shape[0]
    print(f"reconstructed {count} item{'s' * (count != 1)} ({samples} sample{'s' * (samples != 1)} each, "
          f"{result.nfe} score evaluations per sample, {result.seconds:.1f} s); wrote "
          f"{', '.join(map(str, outputs))}")


def command_batch(args: argparse.Namespace) -> None:
    from scoreinv.datasets import reconstruct_h5
    from scoreinv.distributed import world

    config = configure(BatchConfig, args.config, {"model": args.model, "batch_size": args.batch_size,
                                                  **_settings_flags(args)})
    for path, what in ((args.input, "input"), (args.output, "output")):
        if path.suffix.lower() not in (".h5", ".hdf5"):
            raise UserError(f"the {what} {path} must be an .h5 file")
    summary = reconstruct_h5(args.input, args.output, model=config.model, settings=config.settings,
                             batch_size=config.batch_size, device=args.device, overwrite=args.overwrite)
    if world().is_main:  # under torchrun every process runs this command: one summary line
        quality = f"; mean PSNR {summary.psnr:.2f} dB, SSIM {summary.ssim:.3f}" if summary.psnr is not None else ""
        print(f"{summary.items} items: {summary.computed} reconstructed, {summary.reused} already done, "
              f"{summary.failed} failed in {summary.seconds:.1f} s{quality}; wrote {summary.path}")


def _operator_flags(args: argparse.Namespace) -> dict[str, Any]:
    return {"operator.kind": args.operator, "operator.views": args.views, "operator.noise_std": args.noise_std,
            "operator.fraction": args.fraction, "operator.mask_seed": args.mask_seed}


def _settings_flags(args: argparse.Namespace) -> dict[str, Any]:
    names = ("method", "steps", "snr", "weight", "guidance_scale", "num_samples", "seed")
    return {f"settings.{name}": getattr(args, name) for name in names}


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

    from scoreinv.datasets import write_data_h5

    config = configure(PhantomDataConfig, args.config, {"family": args.family, "n": args.n, "size": args.size,
                                                        "seed": args.seed, "block_size": args.block_size})
    _check_output(args.out, args.overwrite)
    started = time.perf_counter()
    write_data_h5(args.out, config, overwrite=args.overwrite, created_by="scoreinv data phantoms")
    _report_written(args.out, f"{config.family} phantoms", config, time.perf_counter() - started)


def command_data_colour(args: argparse.Namespace) -> None:
    import time

    from scoreinv.datasets import write_data_h5

    flags = {"sources": args.sources, "n": args.n, "size": args.size, "seed": args.seed, "scale": args.scale,
             "augment": args.augment, "max_background": args.max_background, "block_size": args.block_size}
    config = configure(ColourDataConfig, args.config, flags)
    _check_output(args.out, args.overwrite)
    started = time.perf_counter()
    write_data_h5(args.out, config, overwrite=args.overwrite, created_by="scoreinv data colour")
    what = f"colour crops of {'+'.join(config.sources)}"
    _report_written(args.out, what, config, time.perf_counter() - started)


def command_data_simulate(args: argparse.Namespace) -> None:
    import time

    from scoreinv.datasets import simulate_h5

    config = configure(SimulateConfig, args.config, {**_operator_flags(args), "seed": args.seed})
    for path, what in ((args.input, "input"), (args.output, "output")):
        if path.suffix.lower() not in (".h5", ".hdf5"):
            raise UserError(f"the {what} {path} must be an .h5 file")
    _check_output(args.output, args.overwrite)
    count, channels, height, width = files.h5_image_shape(args.input)
    if height != width:
        raise UserError(f"{args.input} holds {height}×{width} images; the operators need square ones")
    operator = config.operator.build(height, channels)
    started = time.perf_counter()
    simulate_h5(args.input, args.output, operator, seed=config.seed, overwrite=args.overwrite)
    print(f"wrote {count} measurements of shape {tuple(operator.out_shape)} ({type(operator).__name__}, "
          f"noise std {config.operator.noise_std:g}, seed {config.seed}) to {args.output} "
          f"({time.perf_counter() - started:.1f} s)")


class Parser(argparse.ArgumentParser):
    """argparse with usage mistakes reported like every other user mistake: one line, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"scoreinv: error: {message} (see {self.prog} --help)\n")


MODEL_HELP = "bundled model name (ct-phantom, color-histology) or checkpoint path"


def _add_operator_options(parser: argparse.ArgumentParser, what: str = "forward operator") -> None:
    setting(parser, "--operator", OperatorConfig, "kind", choices=["radon", "mask", "grayscale"], help=what)
    setting(parser, "--views", OperatorConfig, "views", type=int)
    setting(parser, "--noise-std", OperatorConfig, "noise_std", type=float)
    setting(parser, "--fraction", OperatorConfig, "fraction", type=float)
    setting(parser, "--mask-seed", OperatorConfig, "mask_seed", type=int)


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    setting(parser, "--method", ReconstructionSettings, "method", choices=["consistency", "replacement", "guidance"],
            help="conditional sampler")
    setting(parser, "--steps", ReconstructionSettings, "steps", type=int)
    setting(parser, "--snr", ReconstructionSettings, "snr", type=float)
    setting(parser, "--weight", ReconstructionSettings, "weight", type=float)
    setting(parser, "--guidance-scale", ReconstructionSettings, "guidance_scale", type=float)
    setting(parser, "--num-samples", ReconstructionSettings, "num_samples", type=int)
    setting(parser, "--seed", ReconstructionSettings, "seed", type=int)


def build_parser() -> argparse.ArgumentParser:
    defaults = HelpFormatter
    parser = Parser(prog="scoreinv", description=__doc__.split("\n")[0], formatter_class=defaults)
    commands = parser.add_subparsers(dest="command", required=True)
    config_help = "configuration file (.toml or .json) validated by scoreinv.config.{}; flags override it"

    train = commands.add_parser("train", help="train a score model on images (.npy or .h5)", formatter_class=defaults)
    train.add_argument("data", type=Path, help="images (N, C, H, W): a .npy array or the 'images' of an .h5 file")
    train.add_argument("--out", type=Path, required=True, help="checkpoint file (resumed if it exists)")
    train.add_argument("--config", type=Path,
                       help=config_help.format("TrainRunConfig: [model] ModelConfig, [training] TrainingConfig"))
    setting(train, "--sde", SDEConfig, "kind", choices=["ve", "vp", "subvp"], help="forward SDE")
    setting(train, "--steps", TrainingConfig, "steps", type=int)
    setting(train, "--batch-size", TrainingConfig, "batch_size", type=int, help="images per step, over all processes under torchrun (the global batch)")
    setting(train, "--learning-rate", TrainingConfig, "learning_rate", type=float, help="Adam learning rate")
    setting(train, "--checkpoint-every", TrainingConfig, "checkpoint_every", type=int)
    setting(train, "--seed", TrainingConfig, "seed", type=int, help="seeds initialisation, batches and noise")
    train.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ...; under torchrun cuda means "
                       "cuda:LOCAL_RANK (default: the CPU)")
    train.set_defaults(handler=command_train)

    sampler = commands.add_parser("sample", help="draw unconditional samples", formatter_class=defaults)
    sampler.add_argument("model", help=MODEL_HELP)
    sampler.add_argument("--out", type=Path, default=Path("samples.png"),
                         help=".png grid or .npy array; the configuration goes next to it as .json")
    sampler.add_argument("--config", type=Path, help=config_help.format("SampleConfig"))
    setting(sampler, "--n", SampleConfig, "n", type=int)
    setting(sampler, "--method", SampleConfig, "method", choices=["pc", "ode"])
    setting(sampler, "--steps", SampleConfig, "steps", type=int)
    setting(sampler, "--snr", SampleConfig, "snr", type=float)
    setting(sampler, "--seed", SampleConfig, "seed", type=int)
    sampler.add_argument("--overwrite", action="store_true", help="replace existing output files")
    sampler.add_argument("--device", default=None, help="cpu, cuda, ... (default: the CPU)")
    sampler.set_defaults(handler=command_sample)

    rebuild = commands.add_parser("reconstruct", help="reconstruct images from measurements (.npy or .h5)",
                                  formatter_class=defaults)
    rebuild.add_argument("measurements", type=Path, metavar="MEAS",
                         help="a .npy of one measurement or a batch (operator from the flags, image size from the "
                         "model), or an .h5 with 'measurements' and the operator in its attributes")
    rebuild.add_argument("out", type=Path, metavar="OUT",
                         help=".npy (reconstructions; posterior std in OUT_std.npy when --num-samples > 1) or .png "
                         "(a grid; std in OUT_std.png); the configuration and timings go to OUT.json")
    setting(rebuild, "--model", ReconstructConfig, "model", help=MODEL_HELP)
    rebuild.add_argument("--config", type=Path,
                         help=config_help.format("ReconstructConfig: model, [operator], [settings]"))
    rebuild.add_argument("--items", help="items of an .h5 input, START:STOP[:STEP] or an index (default: all)")
    _add_operator_options(rebuild, "forward operator of a .npy input (an .h5 input states its own)")
    _add_settings_options(rebuild)
    rebuild.add_argument("--overwrite", action="store_true", help="replace existing output files")
    rebuild.add_argument("--device", default=None, help="cpu, cuda, ... (default: the CPU)")
    rebuild.set_defaults(handler=command_reconstruct)

    batch = commands.add_parser("batch", help="reconstruct every item of an .h5 file (resumable; torchrun-ready)",
                                formatter_class=defaults)
    batch.add_argument("input", type=Path, metavar="IN.h5", help="measurements and their operator (data simulate)")
    batch.add_argument("output", type=Path, metavar="OUT.h5", help="reconstructions; an unfinished one is resumed")
    setting(batch, "--model", BatchConfig, "model", help=MODEL_HELP)
    batch.add_argument("--config", type=Path, help=config_help.format("BatchConfig: model, batch_size, [settings]"))
    setting(batch, "--batch-size", BatchConfig, "batch_size", type=int)
    _add_settings_options(batch)
    batch.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT.h5")
    batch.add_argument("--device", default=None, help="cpu, cuda, ...; under torchrun cuda means cuda:LOCAL_RANK "
                       "(default: the CPU)")
    batch.set_defaults(handler=command_batch)

    likelihood = commands.add_parser("likelihood", help="bits/dim of images under a model", formatter_class=defaults)
    likelihood.add_argument("model", help=MODEL_HELP)
    likelihood.add_argument("data", type=Path, help="images (N, C, H, W): .npy, or the 'images' of an .h5 file")
    likelihood.add_argument("--config", type=Path, help=config_help.format("LikelihoodConfig"))
    setting(likelihood, "--levels", LikelihoodConfig, "levels", type=int)
    setting(likelihood, "--dequantize", LikelihoodConfig, "dequantize", action=argparse.BooleanOptionalAction)
    setting(likelihood, "--exact", LikelihoodConfig, "exact", action=argparse.BooleanOptionalAction)
    setting(likelihood, "--seed", LikelihoodConfig, "seed", type=int)
    likelihood.add_argument("--items", help="items to evaluate, START:STOP[:STEP] or an index (default: all)")
    likelihood.add_argument("--out", type=Path, help="write the per-image results and the configuration as JSON")
    likelihood.add_argument("--device", default=None, help="cpu, cuda, ... (default: the CPU)")
    likelihood.set_defaults(handler=command_likelihood)
    demo = commands.add_parser("demo", help="sparse-view CT of held-out phantoms: FBP, SIRT, scoreinv",
                               formatter_class=defaults)
    demo.add_argument("--model", default="ct-phantom", help="bundled model name or checkpoint path")
    demo.add_argument("--out", type=Path, default=Path("scoreinv-demo"), help="folder for demo.png, demo.json")
    demo.add_argument("--images", type=int, default=4, help="held-out phantoms to reconstruct")
    demo.add_argument("--views", type=int, default=23, help="measured CT views")
    demo.add_argument("--noise", type=float, default=0.01, help="noise std / largest sinogram value")
    demo.add_argument("--steps", type=int, default=100,
                      help="sampler steps (reconstruct's default for noisy CT is 200: the mean of 4 samples at 100 "
                           "steps scored higher in the same time, docs/reconstruct.md)")
    demo.add_argument("--samples", type=int, default=4, help="posterior samples per image (their mean is shown)")
    demo.add_argument("--sirt-iterations", type=int, default=300, help="iterations of the SIRT baseline")
    demo.add_argument("--seed", type=int, default=0, help="seeds the phantoms, the noise and the sampler")
    demo.add_argument("--quick", action="store_true", help="2 images, 20 steps: a smoke run")
    demo.set_defaults(handler=command_demo)

    data = commands.add_parser("data", help="make an offline data set, or its measurements, in an HDF5 file",
                               formatter_class=defaults)
    data_kinds = data.add_subparsers(dest="data_kind", required=True)
    phantom = data_kinds.add_parser("phantoms", help="CT phantoms (N, 1, S, S)", formatter_class=defaults)
    phantom.add_argument("out", type=Path, help="the HDF5 file to write")
    phantom.add_argument("--config", type=Path, help=config_help.format("PhantomDataConfig"))
    setting(phantom, "--n", PhantomDataConfig, "n", type=int)
    setting(phantom, "--size", PhantomDataConfig, "size", type=int)
    setting(phantom, "--family", PhantomDataConfig, "family", help="ellipses, chest or mixed (half each)")
    setting(phantom, "--seed", PhantomDataConfig, "seed", type=int, help="one torch.Generator seed for the whole file")
    setting(phantom, "--block-size", PhantomDataConfig, "block_size", type=int)
    phantom.add_argument("--overwrite", action="store_true", help="replace an existing file")
    phantom.set_defaults(handler=command_data_phantoms)
    colour = data_kinds.add_parser("colour", help="colour crops of histology / retina photographs (N, 3, S, S)",
                                   formatter_class=defaults)
    colour.add_argument("out", type=Path, help="the HDF5 file to write")
    colour.add_argument("--config", type=Path, help=config_help.format("ColourDataConfig"))
    setting(colour, "--n", ColourDataConfig, "n", type=int)
    setting(colour, "--size", ColourDataConfig, "size", type=int)
    setting(colour, "--seed", ColourDataConfig, "seed", type=int, help="one torch.Generator seed for the whole file")
    setting(colour, "--sources", ColourDataConfig, "sources", nargs="+", help="histology and/or retina")
    setting(colour, "--scale", ColourDataConfig, "scale", type=float, nargs=2, metavar=("LOW", "HIGH"),
            help="crop side / size drawn from U(LOW, HIGH), then resized to size")
    setting(colour, "--max-background", ColourDataConfig, "max_background", type=float)
    setting(colour, "--augment", ColourDataConfig, "augment", action=argparse.BooleanOptionalAction,
            help="random flips and 90° rotations")
    setting(colour, "--block-size", ColourDataConfig, "block_size", type=int)
    colour.add_argument("--overwrite", action="store_true", help="replace an existing file")
    colour.set_defaults(handler=command_data_colour)
    simulate = data_kinds.add_parser("simulate", help="measure the images of an .h5 file with an operator",
                                     formatter_class=defaults)
    simulate.add_argument("input", type=Path, metavar="IN.h5", help="images (data phantoms / data colour)")
    simulate.add_argument("output", type=Path, metavar="OUT.h5",
                          help="images, measurements and the operator's configuration")
    simulate.add_argument("--config", type=Path, help=config_help.format("SimulateConfig: [operator], seed"))
    _add_operator_options(simulate)
    setting(simulate, "--seed", SimulateConfig, "seed", type=int)
    simulate.add_argument("--overwrite", action="store_true", help="replace an existing file")
    simulate.set_defaults(handler=command_data_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    from scoreinv.distributed import shutdown

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.handler(args)
    except ValidationError as error:
        print(f"scoreinv: error: invalid configuration: {describe(error)}", file=sys.stderr)
        return 2
    except (UserError, ValueError, OSError) as error:
        # OSError covers missing, unreadable and existing files (FileNotFoundError, FileExistsError,
        # PermissionError, h5py's). Library messages may carry detail on later lines (torch's, say):
        # the first says what is wrong.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"scoreinv: error: {first_line}", file=sys.stderr)
        return 2
    finally:
        shutdown()  # under torchrun: leave the process group so that every process exits cleanly
    return 0


if __name__ == "__main__":
    sys.exit(main())
