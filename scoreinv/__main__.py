"""``python -m scoreinv``: the command line."""

import sys

from scoreinv.cli import main

sys.exit(main())
