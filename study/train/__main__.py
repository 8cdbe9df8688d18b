"""``python -m study.train``: see `study.train.cli`."""

import sys

from study.train.cli import cli

sys.exit(cli())
