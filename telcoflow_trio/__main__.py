"""``python -m telcoflow_trio``: the same as the ``telcoflow-trio`` command."""

import sys

from .cli import main

sys.exit(main())
