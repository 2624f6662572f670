"""``python -m scoreinv``: the command line (:func:`scoreinv.app.cli.main`)."""

import sys

from scoreinv.app.cli import main

sys.exit(main())
