"""``python -m precision_router``: the command-line interface."""

import sys

from precision_router.cli import main

sys.exit(main())
