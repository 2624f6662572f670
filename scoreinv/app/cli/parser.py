"""The argument parser of the ``scoreinv`` command.

Every option that overrides a configuration field defaults to ``None`` (not given), so that the
configuration file, then the field's default, decide; its help states the field's default. The
sampler flags of ``reconstruct`` and ``batch`` are generated from the fields of
:class:`~scoreinv.config.ReconstructionSettings` (one flag per field, type, choices and help
from the field), and :func:`settings_flags` reads them back by the same fields.
"""

from __future__ import annotations

import argparse
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from scoreinv.classifier import ClassifierTrainingConfig
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
)

DESCRIPTION = "The ``scoreinv`` command line: parse, validate (pydantic), call the library."
MODEL_HELP = "registered prior name (ct-anatomy, ct-phantom, color-histology) or checkpoint path"
DEFAULT_PRIOR = "the registered prior for the operator's modality, channels and image size"


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


def setting(parser: argparse.ArgumentParser, flag: str, model: type[BaseModel], field: str, *,
            default_text: str | None = None, **options: Any) -> None:
    """An option overriding ``field`` of ``model``; its help states the field's default.

    Parameters
    ----------
    parser:
        The (sub)command's parser.
    flag:
        The option, ``--name``.
    model, field:
        The configuration model and the field the option overrides.
    default_text:
        What to show as the default instead of the field's own (for a default that is decided
        elsewhere, such as None).
    **options:
        ``argparse.ArgumentParser.add_argument`` options (``type``, ``choices``, ``help``, ...).
    """
    info = model.model_fields[field]
    text = options.pop("help", None) or info.description or field.replace("_", " ")
    if default_text is not None:
        shown = default_text
    elif info.is_required():
        shown = "required"
    elif info.default is None and model is ReconstructionSettings:
        shown = "per operator family, see docs/reconstruct.md"
    elif isinstance(info.default, tuple):
        shown = " ".join(map(str, info.default))
    else:
        shown = info.default
    parser.add_argument(flag, default=None, help=f"{text} (default: {shown})".replace("%", "%%"), **options)


def _field_options(name: str, info: FieldInfo) -> dict[str, Any]:
    """``add_argument`` options for a field: its type, or its choices for a ``Literal``."""
    annotation = info.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(inner) == 1:
            annotation = inner[0]
    if typing.get_origin(annotation) is Literal:
        choices = list(typing.get_args(annotation))
        return {"choices": choices, "type": type(choices[0])}
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if annotation in (int, float, str):
        return {"type": annotation, "metavar": name.upper()}
    raise TypeError(f"no command-line flag for the setting {name!r} of type {annotation!r}")


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """One flag per field of :class:`~scoreinv.config.ReconstructionSettings` (``--final-iterations``,
    ``--step-filter``, ...), stored as ``settings.<field>``; None when not given."""
    group = parser.add_argument_group("sampler settings (scoreinv.config.ReconstructionSettings; "
                                      "unset: the configuration file, then the operator family)")
    for name, info in ReconstructionSettings.model_fields.items():
        setting(group, "--" + name.replace("_", "-"), ReconstructionSettings, name, dest=f"settings.{name}",
                **_field_options(name, info))


def settings_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The sampler flags of a parsed command as ``{"settings.<field>": value or None}``."""
    return {f"settings.{name}": getattr(args, f"settings.{name}") for name in ReconstructionSettings.model_fields}


def _operator_flag_fields() -> dict[str, dict[str, Any]]:
    """The fields of :data:`~scoreinv.config.OperatorConfig` that a flag can set, with their flag options
    (fields of types no flag can carry, such as a mask's ``boxes``, are for configuration files)."""
    flagged = {}
    for name, info in OperatorConfig.model_fields.items():
        if name == "kind":
            continue
        try:
            flagged[name] = _field_options(name, info)
        except TypeError:
            continue
    return flagged


def operator_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The operator flags of a parsed command as ``{"operator.<field>": value or None}``."""
    return {"operator.kind": args.operator,
            **{f"operator.{name}": getattr(args, f"operator.{name}") for name in _operator_flag_fields()}}


class Parser(argparse.ArgumentParser):
    """argparse with usage mistakes reported like every other user mistake: one line, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"scoreinv: error: {message} (see {self.prog} --help)\n")


def add_operator_options(parser: argparse.ArgumentParser, what: str = "forward operator") -> None:
    """The options of :data:`~scoreinv.config.OperatorConfig` that a flag can set: ``--operator``
    (the family) and one flag per field of the registered families' specs, generated from them."""
    kinds = list(typing.get_args(OperatorConfig.model_fields["kind"].annotation))
    setting(parser, "--operator", OperatorConfig, "kind", choices=kinds, help=what, dest="operator")
    for name, options in _operator_flag_fields().items():
        shown = None if name == "noise_std" else OperatorConfig.family_defaults(name)
        setting(parser, "--" + name.replace("_", "-"), OperatorConfig, name, default_text=shown,
                dest=f"operator.{name}", **options)


NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|inf|infinity|nan)$", re.IGNORECASE)
"""What a command whose values may be negative takes as a number rather than an option."""


def _size(text: str) -> int | str:
    """``--size``: an integer, or ``native``."""
    if text.strip().lower() == "native":
        return "native"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'native', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each subcommand sets ``handler``, the name of its command function."""
    defaults = HelpFormatter
    parser = Parser(prog="scoreinv", description=DESCRIPTION, formatter_class=defaults)
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
    train.add_argument("--init-from", metavar="NAME|PATH",
                       help="start from this prior's EMA weights (its architecture, SDE and preconditioning; the "
                       "[model] settings are ignored) with a fresh optimiser and warm-up")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ...; under torchrun cuda means "
                       "cuda:LOCAL_RANK (default: the CPU)")
    train.set_defaults(handler="train")

    tc = commands.add_parser("train-classifier", help="train a time-dependent classifier p_t(c | x_t) for guidance",
                             formatter_class=defaults)
    tc.add_argument("data", type=Path, metavar="DATA.h5",
                    help="labelled images: 'images' (N, C, H, W), 'labels' (N,) and a 'class_names' attribute")
    tc.add_argument("out", type=Path, metavar="OUT.pt", help="classifier checkpoint (resumed if it exists)")
    tc.add_argument("--prior", default=None, metavar="NAME|PATH",
                    help="the prior it will guide: its SDE makes the training noise (default: the registered prior "
                    "for the images' channels and size)")
    tc.add_argument("--config", type=Path,
                    help="configuration file (.toml or .json) validated by scoreinv.classifier.ClassifierRunConfig: "
                    "[architecture], [training]; flags override it")
    setting(tc, "--steps", ClassifierTrainingConfig, "steps", type=int)
    setting(tc, "--batch-size", ClassifierTrainingConfig, "batch_size", type=int)
    setting(tc, "--learning-rate", ClassifierTrainingConfig, "learning_rate", type=float)
    setting(tc, "--checkpoint-every", ClassifierTrainingConfig, "checkpoint_every", type=int)
    setting(tc, "--dequantize-levels", ClassifierTrainingConfig, "dequantize_levels", type=int)
    setting(tc, "--seed", ClassifierTrainingConfig, "seed", type=int)
    tc.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    tc.set_defaults(handler="train_classifier")

    sampler = commands.add_parser("sample", help="draw samples (of one class with --classifier)",
                                  formatter_class=defaults)
    sampler.add_argument("model", help=MODEL_HELP)
    sampler.add_argument("--out", type=Path, default=Path("samples.png"),
                         help=".png grid or .npy array; the configuration goes next to it as .json")
    sampler.add_argument("--config", type=Path, help=config_help.format("SampleConfig"))
    setting(sampler, "--n", SampleConfig, "n", type=int)
    setting(sampler, "--method", SampleConfig, "method", choices=["pc", "ode"])
    setting(sampler, "--steps", SampleConfig, "steps", type=int)
    setting(sampler, "--snr", SampleConfig, "snr", type=float)
    setting(sampler, "--seed", SampleConfig, "seed", type=int)
    sampler.add_argument("--classifier", default=None, metavar="NAME|PATH",
                         help="guide the sampler to one class with this time-dependent classifier "
                         "(digits-classifier, ct-region-classifier, or a checkpoint path)")
    sampler.add_argument("--label", default=None, help="the class: a class name of the classifier or its index")
    sampler.add_argument("--scale", type=float, default=None,
                         help="classifier guidance scale (default: the classifier's, chosen on validation samples)")
    sampler.add_argument("--overwrite", action="store_true", help="replace existing output files")
    sampler.add_argument("--device", default=None, help="cpu, cuda, ... (default: the CPU)")
    sampler.set_defaults(handler="sample")

    rebuild = commands.add_parser("reconstruct", help="reconstruct images from measurements (.npy or .h5)",
                                  formatter_class=defaults)
    rebuild.add_argument("measurements", type=Path, metavar="MEAS",
                         help="a .npy of one measurement or a batch (operator from the flags, image size from the "
                         "model), or an .h5 with 'measurements' and the operator in its attributes")
    rebuild.add_argument("out", type=Path, metavar="OUT",
                         help=".npy (reconstructions; posterior std in OUT_std.npy when --num-samples > 1) or .png "
                         "(a grid; std in OUT_std.png); the configuration and timings go to OUT.json")
    setting(rebuild, "--model", ReconstructConfig, "model", help=MODEL_HELP, default_text=DEFAULT_PRIOR)
    rebuild.add_argument("--config", type=Path,
                         help=config_help.format("ReconstructConfig: model, [operator], [settings]"))
    rebuild.add_argument("--items", help="items of an .h5 input, START:STOP[:STEP] or an index (default: all)")
    add_operator_options(rebuild, "forward operator of a .npy input (an .h5 input states its own)")
    add_settings_options(rebuild)
    rebuild.add_argument("--overwrite", action="store_true", help="replace existing output files")
    rebuild.add_argument("--device", default=None, help="cpu, cuda, ... (default: the CPU)")
    rebuild.set_defaults(handler="reconstruct")

    batch = commands.add_parser("batch", help="reconstruct every item of an .h5 file (resumable; torchrun-ready)",
                                formatter_class=defaults)
    batch.add_argument("input", type=Path, metavar="IN.h5", help="measurements and their operator (data simulate)")
    batch.add_argument("output", type=Path, metavar="OUT.h5", help="reconstructions; an unfinished one is resumed")
    setting(batch, "--model", BatchConfig, "model", help=MODEL_HELP, default_text=DEFAULT_PRIOR)
    batch.add_argument("--config", type=Path, help=config_help.format("BatchConfig: model, batch_size, [settings]"))
    setting(batch, "--batch-size", BatchConfig, "batch_size", type=int)
    add_settings_options(batch)
    batch.add_argument("--overwrite", action="store_true", help="start over instead of resuming OUT.h5")
    batch.add_argument("--device", default=None, help="cpu, cuda, ...; under torchrun cuda means cuda:LOCAL_RANK "
                       "(default: the CPU)")
    batch.set_defaults(handler="batch")

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
    likelihood.set_defaults(handler="likelihood")
    demo = commands.add_parser("demo", help="sparse-view CT of held-out phantoms: FBP, SIRT, scoreinv",
                               formatter_class=defaults)
    demo.add_argument("--model", default=None, help="bundled model name or checkpoint path "
                      "(default: the registered prior for CT at --size)")
    demo.add_argument("--size", type=int, default=None,
                      help="image size N (default: the model's, or 64); 128-512 take the CT patch prior")
    demo.add_argument("--out", type=Path, default=Path("scoreinv-demo"), help="folder for demo.png, demo.json")
    demo.add_argument("--images", type=int, default=4, help="held-out phantoms to reconstruct")
    demo.add_argument("--views", type=int, default=23, help="measured CT views")
    demo.add_argument("--noise", type=float, default=0.01, help="noise std / largest sinogram value")
    demo.add_argument("--steps", type=int, default=None,
                      help="sampler steps (default: reconstruct's for noisy CT, see docs/reconstruct.md)")
    demo.add_argument("--samples", type=int, default=None,
                      help="posterior samples per image, their mean is shown (default: reconstruct's for noisy CT)")
    demo.add_argument("--sirt-iterations", type=int, default=300, help="iterations of the SIRT baseline")
    demo.add_argument("--seed", type=int, default=0, help="seeds the phantoms, the noise and the sampler")
    demo.add_argument("--quick", action="store_true", help="2 images, 20 steps: a smoke run")
    demo.set_defaults(handler="demo")

    data = commands.add_parser("data", help="make an offline data set, or its measurements, in an HDF5 file",
                               formatter_class=defaults)
    data_kinds = data.add_subparsers(dest="data_kind", required=True)
    phantom = data_kinds.add_parser("phantoms", help="CT phantoms (N, 1, S, S)", formatter_class=defaults)
    phantom.add_argument("out", type=Path, help="the HDF5 file to write")
    phantom.add_argument("--config", type=Path, help=config_help.format("PhantomDataConfig"))
    setting(phantom, "--n", PhantomDataConfig, "n", type=int)
    setting(phantom, "--size", PhantomDataConfig, "size", type=int)
    setting(phantom, "--family", PhantomDataConfig, "family",
            help="ellipses, chest, mixed (half each) or anatomy (head, thorax, abdomen)")
    setting(phantom, "--seed", PhantomDataConfig, "seed", type=int, help="one torch.Generator seed for the whole file")
    setting(phantom, "--block-size", PhantomDataConfig, "block_size", type=int)
    phantom.add_argument("--overwrite", action="store_true", help="replace an existing file")
    phantom.set_defaults(handler="data_phantoms")
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
    colour.set_defaults(handler="data_colour")
    dicom = data_kinds.add_parser("dicom", help="CT slices of DICOM files and folders, in a HU window (N, 1, S, S)",
                                  formatter_class=defaults)
    # "-inf" and "-1e3" are values of --window, not options (argparse only takes "-1" and "-.5" as numbers)
    dicom._negative_number_matcher = NEGATIVE_NUMBER
    dicom.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="DICOM files and folders (read recursively)")
    dicom.add_argument("out", type=Path, metavar="OUT.h5", help="the HDF5 file to write")
    dicom.add_argument("--size", type=_size, default=64, metavar="N|native",
                       help="height = width of the resized slices, 16 to 4096 pixels, or 'native' to keep the "
                       "slices' own size")
    dicom.add_argument("--window", type=float, nargs=2, metavar=("LOW", "HIGH"), default=None,
                       help="the HU mapped to 0 and 1 (default: the package's CT window, -1000 2000)")
    dicom.add_argument("--square", choices=["pad", "crop"], default="pad",
                       help="make non-square slices square by padding with air or by a centred crop")
    dicom.add_argument("--series", action="append", metavar="UID", default=None,
                       help="import only this SeriesInstanceUID (repeat for several; default: every series)")
    dicom.add_argument("--allow-secondary-capture", action="store_true",
                       help="import secondary-capture images with Modality CT too (their values need not be HU)")
    dicom.add_argument("--overwrite", action="store_true", help="replace an existing file")
    dicom.set_defaults(handler="data_dicom")
    export = data_kinds.add_parser("export", help="reconstructions or images of an .h5 file as DICOM, NIfTI or PNG",
                                   formatter_class=defaults)
    export.add_argument("input", type=Path, metavar="FILE.h5",
                        help="a batch result (its reconstructions) or a data file (its images)")
    export.add_argument("out", type=Path, metavar="OUT", help="the folder to write (one series per source series)")
    export.add_argument("--format", choices=["dicom", "nifti", "png"], required=True,
                        help="dicom: a derived CT series per source series; nifti: a volume per series; png: a "
                        "montage per series")
    export.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    export.set_defaults(handler="data_export")
    simulate = data_kinds.add_parser("simulate", help="measure the images of an .h5 file with an operator",
                                     formatter_class=defaults)
    simulate.add_argument("input", type=Path, metavar="IN.h5", help="images (data phantoms / data colour)")
    simulate.add_argument("output", type=Path, metavar="OUT.h5",
                          help="images, measurements and the operator's configuration")
    simulate.add_argument("--config", type=Path, help=config_help.format("SimulateConfig: [operator], seed"))
    add_operator_options(simulate)
    setting(simulate, "--seed", SimulateConfig, "seed", type=int)
    simulate.add_argument("--overwrite", action="store_true", help="replace an existing file")
    simulate.set_defaults(handler="data_simulate")
    return parser
