"""``python -m telcoflow_trio.runner MODULE:ATTR INDEX FD``: a worker of ``telcoflow-trio run``."""

import sys

from ._worker import child_main

sys.exit(child_main(sys.argv[1:]))
