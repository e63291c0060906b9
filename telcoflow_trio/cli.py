"""The ``telcoflow-trio`` command: ``demo``, ``simulate``, ``call``, ``wa``, ``dial`` and ``run``.

User mistakes (bad arguments, an unreachable server, an unreadable file) end with a
one-line message and a non-zero status, never a traceback; Ctrl+C stops cleanly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial

from ._command import run_command
from ._version import __version__

__all__ = ["main"]

EPILOG = {
    "demo": "example: telcoflow-trio demo --calls 8 --sample-rate 16000 --output /tmp/demo",
    "simulate": "example: telcoflow-trio simulate --port 8080   (then type 'help')",
    "call": "example: telcoflow-trio call --server ws://127.0.0.1:8080 --wav hi.wav "
    "--record reply.wav --hangup-after 10",
    "wa": "example: telcoflow-trio wa --server ws://127.0.0.1:8080 --from +15550100 hello",
    "dial": "example: telcoflow-trio dial --server ws://127.0.0.1:8080 +15550100 "
    "--wav hello.wav --record reply.wav",
    "run": """\
example: TELCOFLOW_API_KEY=... telcoflow-trio run my_agent:on_call \\
             --connector-uuid UUID --workers 4 --metrics-port 9100

Every option can also come from the environment ($TELCOFLOW_SERVER, ...).
exit status: 0 drained, 1 a worker failed (unreachable, credentials rejected,
setup failed, failing at start-up), 2 usage error, 130 a second signal ended
the calls at once.""",
}


def _demo_main(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    if args.calls < 1:
        sys.stderr.write("telcoflow-trio demo: --calls must be at least 1\n")
        return 2
    demo = partial(run_demo, calls=args.calls, sample_rate=args.sample_rate, output=args.output)
    try:
        return run_command("telcoflow-trio demo", demo)
    except KeyboardInterrupt:
        sys.stderr.write("telcoflow-trio demo: interrupted\n")
        return 130
    except OSError as exc:
        sys.stderr.write(f"telcoflow-trio demo: {exc}\n")
        return 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-parser per command."""
    from ._demo import add_demo_arguments
    from ._dial import add_dial_arguments, dial_main
    from .runner import add_run_arguments, run_main
    from .simulator._cli import (
        add_call_arguments,
        add_simulate_arguments,
        add_wa_arguments,
        call_main,
        simulate_main,
        wa_main,
    )

    parser = argparse.ArgumentParser(
        prog="telcoflow-trio",
        description="Voice agents on the Telcoflow platform, with trio.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary, add_arguments, run in (
        ("demo", "run the simulator, an example agent and a few callers; "
         "show the calls live and record them as WAV", add_demo_arguments, _demo_main),
        ("simulate", "run the Telcoflow simulator as a local server for your own agent",
         add_simulate_arguments, simulate_main),
        ("call", "place a call into a running simulator as the caller (a softphone)",
         add_call_arguments, call_main),
        ("wa", "write a WhatsApp message into a running simulator as a user; print the replies",
         add_wa_arguments, wa_main),
        ("dial", "place an outbound call as the agent: say a WAV, record the callee",
         add_dial_arguments, dial_main),
        ("run", "run your agent in production: workers, graceful drain on SIGTERM, metrics",
         add_run_arguments, run_main),
    ):  # fmt: skip
        sub = commands.add_parser(
            name, help=summary, description=summary, epilog=EPILOG[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        # Building the parser imports the simulator: a Ctrl+C that early is not
        # inside any command's own handling yet.
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        sys.stderr.write("telcoflow-trio: interrupted\n")
        return 130
    status: int = args.run(args)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
