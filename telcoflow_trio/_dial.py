"""``telcoflow-trio dial``: place an outbound call from the command line, as the agent.

It connects to a running simulator (or any platform URL) like an agent does,
calls the number, says the WAV file once the callee answers, records what it
hears, and hangs up ``--hangup-after`` seconds after the answer (default: 2 s
after the WAV has played) unless the callee hangs up first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import IO, Any

import trio

from ._cli_secrets import add_api_key_arguments, api_key_from
from ._client import TelcoflowClient
from ._command import command_status
from .config import TelcoflowClientConfig
from .exceptions import BufferClosedError
from .simulator._audio import read_wav, resample, write_wav
from .simulator._model import DEFAULT_API_KEY, DEFAULT_CONNECTOR_UUID

__all__ = ["add_dial_arguments", "dial_main", "run_dial"]

#: Seconds the call stays up after the WAV has played, without ``--hangup-after``.
_LINGER = 2.0


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_dial_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``dial`` options to ``parser``."""
    parser.add_argument("number", help="the number to call (e.g. +15550100)")
    parser.add_argument(
        "--server", default="ws://127.0.0.1:8080", help="platform base URL (ws:// or wss://)"
    )
    parser.add_argument("--wav", type=Path, help="what to say once answered (16-bit PCM WAV)")
    parser.add_argument("--record", type=Path, help="write what the callee says here (WAV)")
    parser.add_argument(
        "--hangup-after",
        type=_seconds,
        help=f"hang up this long after the answer (default: {_LINGER:g} s after the WAV)",
    )
    parser.add_argument(
        "--ring-timeout", type=_seconds, default=60.0, help="give up ringing after this long"
    )
    parser.add_argument("--sample-rate", type=int, choices=(8000, 16000, 24000), default=16000)
    add_api_key_arguments(parser, default_note=f"default {DEFAULT_API_KEY!r}")
    parser.add_argument("--connector-uuid", default=DEFAULT_CONNECTOR_UUID)
    parser.add_argument("--ca-file", type=Path, help="CA to verify a wss:// server with")


async def run_dial(
    args: argparse.Namespace,
    *,
    out: IO[str] = sys.stdout,
    client: TelcoflowClient | None = None,
) -> dict[str, Any]:
    """Place the call; print and return a summary. ``client``: an open one to use.

    Raises:
        OSError, ValueError: the WAV file cannot be read, or the number is malformed.
        WSSError: the platform cannot be reached, refused the call, or nobody answered.
    """
    rate = args.sample_rate
    speech = b""
    if args.wav is not None:
        pcm, wav_rate = read_wav(args.wav)
        speech = resample(pcm, wav_rate, rate)
    if client is None:
        key = api_key_from(args, os.environ) or DEFAULT_API_KEY
        ca_file = None if args.ca_file is None else str(args.ca_file)
        config = TelcoflowClientConfig.sandbox(
            key, args.connector_uuid, base_url=args.server, sample_rate=rate, ca_file=ca_file
        )
        async with TelcoflowClient(config) as own:
            return await run_dial(args, out=out, client=own)
    heard = bytearray()
    async with client.place_call(args.number, ring_timeout=args.ring_timeout) as call:
        out.write(f"call {call.call_id} to {args.number}: answered\n")
        out.flush()
        answered = trio.current_time()
        linger = args.hangup_after
        if linger is None:
            linger = len(speech) / (2 * call.sample_rate) + _LINGER
        async with trio.open_nursery() as nursery:
            nursery.cancel_scope.deadline = answered + linger

            async def listen() -> None:
                async for chunk in call.audio_stream():
                    heard.extend(chunk)
                nursery.cancel_scope.cancel()  # the callee hung up

            nursery.start_soon(listen)
            if speech:
                with contextlib.suppress(BufferClosedError):  # the callee hung up
                    await call.write_audio(speech)
    termination = call.termination
    summary = {
        "callId": call.call_id,
        "number": args.number,
        "endedBy": str(termination.reason) if termination is not None else None,
        "saidSeconds": len(speech) / (2 * call.sample_rate),
        "heardSeconds": len(heard) / (2 * call.sample_rate),
    }
    if args.record is not None:
        write_wav(args.record, bytes(heard), call.sample_rate)
        summary["record"] = str(args.record)
    out.write(json.dumps(summary, indent=2) + "\n")
    out.flush()
    return summary


def dial_main(args: argparse.Namespace) -> int:
    """``telcoflow-trio dial``: place one outbound call. Returns the exit code."""
    return command_status("telcoflow-trio dial", partial(run_dial, args))
