"""``python -m study.train``: see `study.train.cli`."""

import sys

from study.errors import run_cli
from study.train.cli import main

sys.exit(run_cli(main))
