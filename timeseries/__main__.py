"""Entry point of ``python -m timeseries`` (see :mod:`timeseries.cli`)."""

import sys

from timeseries.cli import main

sys.exit(main())
