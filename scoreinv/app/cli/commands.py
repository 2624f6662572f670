"""The command functions of ``scoreinv``: validate the configuration, call the library, write files.

Each ``command_<name>(args)`` runs one (sub)command on the namespace that
:func:`scoreinv.app.cli.parser.build_parser` parsed; :data:`COMMANDS` maps the parser's
``handler`` names to them. :func:`configure` merges a command's pydantic model from its
defaults, the data, the configuration file and the flags, in that order. A user mistake raises
:class:`UserError` (or a ``ValueError`` / ``OSError`` from the library): one line, exit code 2.
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

from scoreinv.app import files
from scoreinv.app.cli.parser import operator_flags, settings_flags
from scoreinv.config import (
    BatchConfig,
    ColourDataConfig,
    LikelihoodConfig,
    OperatorConfig,
    PhantomDataConfig,
    ReconstructConfig,
    SampleConfig,
    SimulateConfig,
    TrainRunConfig,
)


class UserError(Exception):
    """A mistake in the command's input: reported as one line, exit code 2."""


class ItemsFailed(Exception):
    """``batch`` wrote its output but some items failed: reported as one line, exit code 1."""


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
    if args.init_from:
        from scoreinv.checkpoint import trainable_copy

        model = trainable_copy(args.init_from)
        if (model.channels, model.image_size) != (shape[1], shape[-1]):
            raise UserError(f"--init-from {args.init_from} models {model.channels}-channel {model.image_size}² "
                            f"images, but {args.data} holds {shape[1]}-channel {shape[-1]}² images")
    else:
        model = ScoreModel(config.model, seed=config.training.seed)
    result = train(model, data, config.training, checkpoint_path=args.out, resume=not args.restart,
                   device=args.device)
    losses = result.losses[-100:]
    summary = f"mean loss of the last {len(losses)} steps {sum(losses) / len(losses):.4f}" if losses else ""
    if world().is_main:  # under torchrun every process runs this command: one summary line
        print(f"trained to step {result.step} in {result.seconds:.1f} s; {summary}; wrote {args.out}")


def command_train_classifier(args: argparse.Namespace) -> None:
    from scoreinv.checkpoint import default_prior, read_checkpoint, resolve_checkpoint
    from scoreinv.classifier import (ClassifierConfig, ClassifierRunConfig, TimeClassifier, data_statistics,
                                     train_classifier)
    from scoreinv.datasets.labelled import read_labelled_h5

    if args.out.suffix.lower() != ".pt":
        raise UserError(f"the classifier checkpoint {args.out} must end in .pt")
    images, labels, names = read_labelled_h5(args.data)
    if images.shape[-2] != images.shape[-1]:
        raise UserError(f"images must be square, got {images.shape[-2]}×{images.shape[-1]}")
    flags = {"training.steps": args.steps, "training.batch_size": args.batch_size,
             "training.learning_rate": args.learning_rate, "training.checkpoint_every": args.checkpoint_every,
             "training.dequantize_levels": args.dequantize_levels, "training.seed": args.seed}
    run = configure(ClassifierRunConfig, args.config, flags)
    prior_name = args.prior or default_prior(None, images.shape[1], images.shape[-1])
    prior = read_checkpoint(resolve_checkpoint(prior_name))["model_config"]  # its SDE and images, no weights
    if (prior.unet.channels, prior.unet.image_size) != (images.shape[1], images.shape[-1]):
        raise UserError(f"the prior {prior_name} models {prior.unet.channels}-channel {prior.unet.image_size}² "
                        f"images, {args.data} holds {images.shape[1]}-channel {images.shape[-1]}² images")
    low, high = prior.value_range
    if float(images.min()) < low - 1e-6 or float(images.max()) > high + 1e-6:
        raise UserError(f"{args.data} has values outside the prior's value range {prior.value_range}")
    mean, std = data_statistics(images)
    config = ClassifierConfig(class_names=names, image_size=images.shape[-1], channels=images.shape[1],
                              sde=prior.sde, architecture=run.architecture, value_range=prior.value_range,
                              data_mean=mean, data_std=std, prior=str(prior_name))
    model = TimeClassifier(config, seed=run.training.seed)
    result = train_classifier(model, images, labels, run.training, checkpoint_path=args.out,
                              resume=not args.restart)
    tail = result.accuracies[-100:]
    summary = f"; batch accuracy of the last {len(tail)} steps {sum(tail) / len(tail):.3f}" if tail else ""
    print(f"trained a {len(names)}-class classifier ({', '.join(names)}) on {len(labels)} images to step "
          f"{result.step} in {result.seconds:.1f} s{summary}; wrote {args.out}")


def command_sample(args: argparse.Namespace) -> None:
    from scoreinv.checkpoint import load_model
    from scoreinv.generation import sample

    config = configure(SampleConfig, args.config, {"n": args.n, "method": args.method, "steps": args.steps,
                                                   "snr": args.snr, "seed": args.seed})
    record = files.companion(args.out, "", ".json")
    for path in (args.out, record):
        files.check_output(path, (".npy", ".png") if path == args.out else (".json",), args.overwrite)
    prior = load_model(args.model, device=args.device)
    guidance: dict[str, Any] = {}
    if args.classifier is not None or args.label is not None or args.scale is not None:
        from scoreinv.classifier import resolve_classifier

        if args.classifier is None or args.label is None:
            raise UserError("class-conditional sampling needs both --classifier and --label")
        classifier = resolve_classifier(args.classifier, device=args.device)
        scale = args.scale if args.scale is not None else classifier.default_scale
        guidance = {"classifier": classifier, "label": args.label, "classifier_scale": scale}
    samples = sample(prior, config.n, method=config.method, steps=config.steps, predictor=config.predictor,
                     corrector=config.corrector, snr=config.snr, corrector_steps=config.corrector_steps,
                     rtol=config.rtol, atol=config.atol, seed=config.seed, **guidance)
    files.write_images(args.out, samples)
    conditioned = {} if not guidance else {
        "classifier": args.classifier, "label": args.label, "class_index": guidance["classifier"].label_index(
            args.label), "classifier_scale": guidance["classifier_scale"]}
    files.write_json(record, {"command": "sample", "model": args.model, "config": config, **conditioned})
    print(f"wrote {config.n} samples to {args.out} (configuration in {record})")


def _check_fits(images: torch.Tensor, model: Any, path: Path) -> None:
    if not model.serves(tuple(images.shape[1:])):
        raise UserError(f"{path} holds images of shape {tuple(images.shape[1:])}, the model was trained "
                        f"on {model.describe_images()}")


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


def _image_size_for(operator: OperatorConfig, measurement_shape: tuple[int, ...], channels: int,
                    sizes: range) -> int | None:
    """The first image size of ``sizes`` at which ``operator`` makes measurements of this shape."""
    for size in sizes:
        try:
            candidate = operator.build(size, channels)
        except ValueError:  # the operator does not work on these channels
            return None
        expected = tuple(candidate.out_shape)
        compared = min(len(expected), len(measurement_shape))
        if tuple(measurement_shape[-compared:]) == expected[-compared:]:
            return size
    return None


def _registered_prior(operator: OperatorConfig, measurement_shape: tuple[int, ...]) -> tuple[str, int]:
    """The registered prior for measurements made by ``operator`` (given by flags, so without a
    size), and the image size: the first registered image shape whose operator produces
    measurements of this shape, then the library's rule (:func:`scoreinv.checkpoint.default_prior`)."""
    from scoreinv.checkpoint import PRIORS, default_prior

    fitting: dict[tuple[int, ...], list[str]] = {}  # measurement shape (smallest size) -> the priors taking it
    for entry in PRIORS.values():
        size = _image_size_for(operator, measurement_shape, entry.channels,
                               range(entry.image_size, entry.max_image_size + 1))
        if size is not None:
            modality = operator.build(size, entry.channels).modality
            return default_prior(modality, entry.channels, size), size
        try:
            expected = tuple(operator.build(entry.image_size, entry.channels).out_shape)
        except ValueError:
            continue
        fitting.setdefault(expected, []).append(entry.describe())
    sinogram = operator.kind == "radon"
    given = f"measurements of shape {tuple(measurement_shape)}"
    if sinogram:
        given = f"a sinogram of {measurement_shape[-1]} detectors ({given})"
    takes = "; ".join(f"{shape}{f' ({shape[-1]} detectors)' if sinogram else ''}: {'; '.join(names)}"
                      for shape, names in fitting.items())
    takes = f"; the registered priors take {takes} (a patch prior: up to its largest size)" if fitting else ""
    raise UserError(f"no registered prior fits {given} from operator {operator.kind!r}{takes}: pass --model")


def command_reconstruct(args: argparse.Namespace) -> None:
    from scoreinv.checkpoint import default_prior_for, load_model
    from scoreinv.reconstruct import posterior, resolve_settings

    flags = {"model": args.model, **operator_flags(args), **settings_flags(args)}
    config = configure(ReconstructConfig, args.config, flags)
    files.check_output(args.out, (".npy", ".png"), args.overwrite)
    measurements, operator, indices = files.read_measurements(args.measurements, files.parse_items(args.items))
    if operator is not None and config.operator is not None:
        raise UserError(f"{args.measurements} states the operator that made it: drop the operator flags "
                        "and the [operator] section")
    model_name, model = config.model, None
    if operator is None:  # a .npy input: the operator from the flags, its size from the model
        if config.operator is None:
            config = config.model_copy(update={"operator": OperatorConfig()})
        if model_name is None:
            model_name, _ = _registered_prior(config.operator, tuple(measurements.shape))
        model = load_model(model_name, device=args.device)
        low, high = model.image_sizes
        size = _image_size_for(config.operator, tuple(measurements.shape), model.channels, range(low, high + 1))
        operator = config.operator.build(low if size is None else size, model.channels)
    settings = resolve_settings(operator, config.settings)  # the method is checked before a prior is loaded
    samples = settings.num_samples
    outputs = [args.out, files.companion(args.out, "", ".json")]
    if samples > 1:
        outputs.insert(1, files.companion(args.out, "_std"))
    for path in outputs:
        files.check_output(path, (".json",) if path.suffix == ".json" else (".npy", ".png"), args.overwrite)
    if model is None:
        if model_name is None:
            model_name = default_prior_for(operator, tuple(operator.out_shape))
        model = load_model(model_name, device=args.device)
    if indices is None:  # a .npy input: its items are numbered from 0, one item alone is item 0
        batched = measurements.ndim == len(operator.out_shape) + 1
        indices = list(range(measurements.shape[0])) if batched else [0]
    # Item i is seeded from (seed, i, sample), as in `scoreinv batch`: the same item gives the same
    # result whatever else is reconstructed with it.
    result = posterior(measurements, operator, model, settings=settings, device=args.device, item_seeds=indices)
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
        "model": str(model_name), "operator": operator.config(), "settings": result.settings, "nfe": result.nfe,
        "seconds": result.seconds,
    })
    count = 1 if result.mean.ndim == 3 else result.mean.shape[0]
    print(f"reconstructed {count} item{'s' * (count != 1)} ({samples} sample{'s' * (samples != 1)} each, "
          f"{result.nfe} score evaluations per sample, {result.seconds:.1f} s); wrote "
          f"{', '.join(map(str, outputs))}")


def command_batch(args: argparse.Namespace) -> None:
    from scoreinv.app.batch import reconstruct_h5
    from scoreinv.distributed import world

    config = configure(BatchConfig, args.config, {"model": args.model, "batch_size": args.batch_size,
                                                  **settings_flags(args)})
    for path, what in ((args.input, "input"), (args.output, "output")):
        if path.suffix.lower() not in (".h5", ".hdf5"):
            raise UserError(f"the {what} {path} must be an .h5 file")
    summary = reconstruct_h5(args.input, args.output, model=config.model, settings=config.settings,
                             batch_size=config.batch_size, device=args.device, overwrite=args.overwrite)
    if world().is_main:  # under torchrun every process runs this command: one summary line
        quality = f"; mean PSNR {summary.psnr:.2f} dB, SSIM {summary.ssim:.3f}" if summary.psnr is not None else ""
        print(f"{summary.items} items: {summary.computed} computed, {summary.reused} already done, "
              f"{summary.failed} failed in {summary.seconds:.1f} s{quality}; wrote {summary.path}")
    if summary.failed:
        by_reason: dict[str, list[int]] = {}
        for item, reason in summary.failed_items:
            by_reason.setdefault(reason, []).append(item)
        shown = "; ".join(f"item{'s' * (len(items) > 1)} {', '.join(map(str, items[:8]))}"
                          f"{f' and {len(items) - 8} more' if len(items) > 8 else ''} ({reason})"
                          for reason, items in by_reason.items())
        finished = summary.items - summary.failed
        held = f"the {finished} finished item{'s' * (finished != 1)}" if finished else "no finished item"
        raise ItemsFailed(f"{summary.failed} of {summary.items} items failed: {shown}; {summary.path} holds {held}; "
                          "fix the input and rerun the same command to complete it")


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
    from scoreinv.app.demo import run_demo

    if args.quick:
        args.images, args.steps, args.samples, args.sirt_iterations = 2, 20, 2, 50
    result = run_demo(args.out, model=args.model, n_images=args.images, views=args.views, noise=args.noise,
                      steps=args.steps, num_samples=args.samples, sirt_iterations=args.sirt_iterations,
                      seed=args.seed, size=args.size)
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


def command_data_dicom(args: argparse.Namespace) -> None:
    import time

    from scoreinv.datasets.dicom import dicom_to_h5

    if args.out.exists() and any(args.out.resolve() == Path(p).resolve() for p in args.paths):
        raise UserError(f"the output {args.out} is one of the inputs: choose another output")
    if args.out.suffix.lower() not in (".h5", ".hdf5"):
        raise UserError(f"the output {args.out} must be an .h5 file")
    _check_output(args.out, args.overwrite)
    window = tuple(args.window) if args.window is not None else None
    started = time.perf_counter()
    try:
        result = dicom_to_h5(args.paths, args.out, size=args.size, window=window, square=args.square,
                             overwrite=args.overwrite, series=args.series,
                             allow_secondary_capture=args.allow_secondary_capture, created_by="scoreinv data dicom")
    except ImportError as error:  # pydicom is an optional dependency
        raise UserError(str(error)) from None
    for name, reason in result.skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    print(f"{result.summary()} ({time.perf_counter() - started:.1f} s)")


def command_data_export(args: argparse.Namespace) -> None:
    from scoreinv.app.export import export_h5

    try:
        result = export_h5(args.input, args.out, args.format, overwrite=args.overwrite)
    except ImportError as error:  # pydicom / nibabel are optional dependencies
        raise UserError(str(error)) from None
    for item, reason in result.skipped:
        print(f"skipped item {item}: {reason}", file=sys.stderr)
    print(result.summary())


def command_data_simulate(args: argparse.Namespace) -> None:
    import time

    from scoreinv.datasets import simulate_h5

    config = configure(SimulateConfig, args.config, {**operator_flags(args), "seed": args.seed})
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


COMMANDS = {
    "train": command_train,
    "train_classifier": command_train_classifier,
    "sample": command_sample,
    "reconstruct": command_reconstruct,
    "batch": command_batch,
    "likelihood": command_likelihood,
    "demo": command_demo,
    "data_phantoms": command_data_phantoms,
    "data_colour": command_data_colour,
    "data_dicom": command_data_dicom,
    "data_simulate": command_data_simulate,
    "data_export": command_data_export,
}
