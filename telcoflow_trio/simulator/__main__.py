"""``python -m telcoflow_trio.simulator``: the same as ``telcoflow-trio simulate``."""

from __future__ import annotations

import argparse
import logging
import sys

from ._cli import add_simulate_arguments, simulate_main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m telcoflow_trio.simulator",
        description="A local Telcoflow platform for developing and testing voice agents.",
    )
    add_simulate_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return simulate_main(args)


if __name__ == "__main__":
    sys.exit(main())
