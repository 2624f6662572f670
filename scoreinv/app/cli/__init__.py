"""The ``scoreinv`` command line: parse, validate (pydantic), call the library.

    scoreinv train DATA.npy|.h5 --out MODEL.pt [--config FILE] [--steps N] [--batch-size B] [--seed K] ...
    scoreinv train-classifier DATA.h5 OUT.pt [--prior NAME|PATH] [--config FILE] [--steps N] [--batch-size B] ...
    scoreinv sample MODEL [--out samples.png|.npy] [--config FILE] [--n 16] [--method pc|ode] [--steps N] [--seed K]
        [--classifier NAME|PATH --label CLASS [--scale S]]
    scoreinv reconstruct MEAS.npy|.h5 OUT.npy|.png [--model NAME|PATH] [--config FILE] [--items 0:10]
        [--operator radon|mask|grayscale] [--views 23] [--noise-std S] [--fraction F]
        [SAMPLER SETTINGS] [--device D] [--overwrite]
    scoreinv batch IN.h5 OUT.h5 [--model NAME|PATH] [--config FILE] [--batch-size B]
        [SAMPLER SETTINGS] [--device D] [--overwrite]
    scoreinv likelihood MODEL DATA.npy|.h5 [--config FILE] [--levels 256] [--exact] [--items 0:10] [--out R.json]
    scoreinv demo [--quick] [--model NAME|PATH] [--out FOLDER]
    scoreinv data phantoms OUT.h5 --n N [--size S] [--family ellipses|chest|mixed|anatomy] [--seed K] [--config FILE]
    scoreinv data colour OUT.h5 --n N [--size S] [--seed K] [--sources histology retina] [--config FILE]
    scoreinv data dicom PATH... OUT.h5 [--size 64] [--window LOW HIGH] [--square pad|crop] [--overwrite]
    scoreinv data simulate IN.h5 OUT.h5 [--operator radon|mask|grayscale] [--views 23] [--noise-std S]
        [--fraction F] [--seed K] [--config FILE] [--overwrite]

MODEL is a registered prior (ct-anatomy, ct-phantom, color-histology) or a checkpoint path; without
``--model``, ``reconstruct`` and ``batch`` take the registered prior for the operator's modality,
channels and image size. SAMPLER SETTINGS are one flag per field of
scoreinv.config.ReconstructionSettings (``--steps N``, ``--final-iterations K``, ...), generated
from the fields; unset, the file or the operator family decides. A command with
settings takes ``--config FILE`` (.toml or .json), validated by its pydantic model in
scoreinv.config; flags override the file, the file overrides the defaults, and what ran is
stored with the output. ``torchrun --nproc_per_node=K -m scoreinv train|batch ...`` runs on K
processes. A user mistake (missing or unreadable file, bad shape, invalid setting, unknown
key, a device this machine does not have) prints one line ``scoreinv: error: ...`` and exits 2;
``batch`` with failed items exits 1 after listing them; Ctrl-C prints one line and exits 130.
See docs/cli.md.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError

from scoreinv.app.cli.commands import COMMANDS, ItemsFailed, UserError, describe
from scoreinv.app.cli.parser import build_parser
from scoreinv.devices import check_device

#: The exit code after Ctrl-C (128 + SIGINT), as a shell reports it.
INTERRUPTED = 130

__all__ = ["main", "build_parser", "UserError"]


def main(argv: list[str] | None = None) -> int:
    """Run the ``scoreinv`` command ``argv`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0; 2 after a user mistake, reported as one line on stderr
        (``scoreinv: error: ...``; usage mistakes exit 2 from the parser); 1 when ``batch``
        finished with failed items (listed on one line); 130 after Ctrl-C (one line).
    """
    from scoreinv.distributed import shutdown

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_device(getattr(args, "device", None))  # before any file is read or written
        COMMANDS[args.handler](args)
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
    except ItemsFailed as error:
        print(f"scoreinv: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:  # a batch job says how far it got; anything else is just stopped
        print(f"scoreinv: {str(error) or 'interrupted'}", file=sys.stderr)
        return INTERRUPTED
    finally:
        shutdown()  # under torchrun: leave the process group so that every process exits cleanly
    return 0
