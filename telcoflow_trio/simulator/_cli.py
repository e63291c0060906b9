"""Command-line front ends of the simulator: ``simulate`` (the server) and ``call`` (a softphone).

The ``telcoflow-trio`` CLI wires these in with :func:`add_simulate_arguments` /
:func:`simulate_main` and :func:`add_call_arguments` / :func:`call_main`;
``python -m telcoflow_trio.simulator`` runs ``simulate`` on its own.

While ``simulate`` runs, it reads operator commands from standard input (type
``help``): place calls, hang them up, and inject every fault the Python API has.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import ssl
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import IO, Any

import trio

from .._cli_secrets import UsageError, add_api_key_arguments, api_key_from
from .._command import command_status, run_command
from ..exceptions import WSSError
from ._audio import AudioSource, noise, silence, tone, wav_source
from ._call import SimulatedCall
from ._connection import FrameLog, JsonLinesFrameLog
from ._model import DEFAULT_API_KEY, DEFAULT_CONNECTOR_UUID, CallerScript, SimulatorConfig
from ._server import Simulator, open_simulator
from ._softphone import run_softphone

__all__ = [
    "add_call_arguments",
    "add_simulate_arguments",
    "add_wa_arguments",
    "call_main",
    "run_call",
    "run_simulate",
    "run_wa",
    "simulate_main",
    "wa_main",
]

logger = logging.getLogger(__name__)

LineReader = Callable[[], Awaitable[str]]

HELP = """\
commands (CALL is the call's #number or id):
  call [tone HZ | noise SEED | silence | wav PATH] [hangup=S] [talk=S]
       [answer-after=S|never] [hangup-before-answer=S] [hangup-when-silent=S]
       [record=DIR] [from=NUMBER] [to=NUMBER]        place a call
  hangup CALL                   the caller (of an outbound call: the callee) hangs up
  callee NUMBER [tone HZ | noise SEED | silence | wav PATH] [pickup=S|never]
       [reject] [hangup=S] [talk=S] [record=DIR]
                                how the next outbound call to NUMBER is answered
  answer CALL | reject CALL     the callee of a ringing outbound call picks up / declines
  calls                         list active calls
  stats                         simulator statistics
  drop-control                  drop every control connection
  stall-pings on|off            stop/resume answering control pings
  drop-media CALL               drop a call's media connection
  delay-responses SECONDS       hold back command responses (0: off)
  drop-responses on|off         stop/resume sending command responses
  reject-auth on|off            answer every upgrade with HTTP 401
  slow-pulls FACTOR             pull agent audio FACTOR times slower (1: normal)
  call-error CALL [CODE]        send call.error (default TTS_SESSION_ERROR)
  delay-creates SECONDS         answer session.create this late (0: off)
  refuse-creates CODE|off       refuse session.create (calls, WA) with CODE
  close-session CALL [REASON]   close a call's session (default FORCE_CLOSE)
  send-control TEXT             send TEXT as-is to every control connection
  send-media CALL TEXT          send TEXT as-is on a call's media connection
  wa NUMBER TEXT                a WhatsApp user NUMBER writes TEXT to the agent
  wa-received NUMBER            what the WhatsApp user NUMBER received
  wa-fail CODE|off              refuse every wa.msg.out with CODE (e.g. OVERFLOW)
  wa-delay SECONDS              acknowledge wa.msg.out SECONDS late (0: off)
  wa-close NUMBER               close the user's WhatsApp session (FORCE_CLOSE)
  rest-fail STATUS|off          answer every REST request with HTTP STATUS (5xx)
  quit                          stop the simulator
"""


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    add_api_key_arguments(
        parser, default_note=f"clients must send it; default {DEFAULT_API_KEY!r}, for local use"
    )
    parser.add_argument(
        "--connector-uuid",
        default=DEFAULT_CONNECTOR_UUID,
        help=f"connector UUID clients must send (default {DEFAULT_CONNECTOR_UUID!r})",
    )
    parser.add_argument("--tls-cert", type=Path, help="server certificate (PEM): serve wss://")
    parser.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    parser.add_argument(
        "--tls-client-ca", type=Path, help="require client certificates signed by this CA (mTLS)"
    )
    parser.add_argument(
        "--sample-rate",
        type=int,
        choices=(8000, 16000, 24000),
        help="accept only this setup sample rate (default: any)",
    )
    parser.add_argument(
        "--frame-log",
        type=Path,
        help="write one JSON line per frame sent or received and per HTTP request",
    )
    parser.add_argument(
        "--no-console", action="store_true", help="do not read operator commands from stdin"
    )


def add_call_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``call`` (softphone) options to ``parser``."""
    parser.add_argument(
        "--server", default="ws://127.0.0.1:8080", help="simulator base URL (ws:// or wss://)"
    )
    parser.add_argument("--wav", type=Path, help="what the caller says (16-bit PCM WAV)")
    parser.add_argument("--record", type=Path, help="write the agent's reply here (WAV)")
    parser.add_argument(
        "--hangup-after",
        type=_seconds,
        help="hang up this long after the answer (default: 2 s after the WAV has played)",
    )
    parser.add_argument(
        "--answer",
        metavar="NUMBER",
        help="be the callee of the next outbound call an agent places to NUMBER "
        "(--wav is then what the callee says)",
    )
    parser.add_argument("--caller", default="+15550100", help="the calling number")
    parser.add_argument("--callee", default="+15550199", help="the called number")
    add_api_key_arguments(parser, default_note=f"default {DEFAULT_API_KEY!r}")
    parser.add_argument("--connector-uuid", default=DEFAULT_CONNECTOR_UUID)
    parser.add_argument("--ca-file", type=Path, help="CA to verify a wss:// simulator with")
    parser.add_argument("--cert", type=Path, help="client certificate for mTLS (PEM)")
    parser.add_argument("--key", type=Path, help="client private key for mTLS (PEM)")


def add_wa_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``telcoflow-trio wa``."""
    parser.add_argument(
        "--server", default="ws://127.0.0.1:8080", help="simulator base URL (ws:// or wss://)"
    )
    parser.add_argument(
        "--from", dest="sender", default="+15550100", help="the WhatsApp user's number"
    )
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=5.0,
        help="wait this long for the agent's reply and print it (default 5 s; 0: do not wait)",
    )
    parser.add_argument("text", help="the message the user writes")
    add_api_key_arguments(parser, default_note=f"default {DEFAULT_API_KEY!r}")
    parser.add_argument("--connector-uuid", default=DEFAULT_CONNECTOR_UUID)
    parser.add_argument("--ca-file", type=Path, help="CA to verify a wss:// simulator with")


async def run_wa(args: argparse.Namespace, *, out: IO[str] = sys.stdout) -> dict[str, Any]:
    """Write one WhatsApp message as a simulated user; print and return the agent's replies.

    Raises:
        WSSError: the simulator cannot be reached or refused the message.
    """
    import httpx

    from ..proto import decode_error, http_base_url
    from ._server import WA_USER_PATH

    headers = {"x-api-key": _api_key(args), "x-connector-uuid": args.connector_uuid}
    params = {"from": args.sender, "text": args.text, "wait": str(args.wait)}
    verify: ssl.SSLContext | bool = True
    if args.server.startswith("wss://"):
        verify = ssl.create_default_context(cafile=args.ca_file)
    try:
        async with httpx.AsyncClient(verify=verify, timeout=args.wait + 10) as http:
            url = http_base_url(args.server) + WA_USER_PATH
            response = await http.post(url, params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise WSSError(f"could not reach {args.server}: {exc}") from exc
    if response.status_code != 200:
        code, message = decode_error(response.status_code, response.content)
        raise WSSError(
            f"the simulator refused the message: {code or response.status_code}: {message}"
        )
    result: dict[str, Any] = response.json()
    out.write(f"sent to the agent (session {result['sessionId']})\n")
    for reply in result["replies"]:
        out.write(f"agent: {json.dumps(reply)}\n")
    out.flush()
    return result


def wa_main(args: argparse.Namespace) -> int:
    """``telcoflow-trio wa``: write a WhatsApp message into a running simulator."""
    return command_status("telcoflow-trio wa", partial(run_wa, args))


def _api_key(args: argparse.Namespace) -> str:
    return api_key_from(args, os.environ) or DEFAULT_API_KEY


def _config(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        api_key=_api_key(args),
        connector_uuid=args.connector_uuid,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        sample_rate=args.sample_rate,
    )


class _Console:
    """Prints call events and carries out operator commands."""

    def __init__(self, sim: Simulator, out: IO[str]) -> None:
        self.sim = sim
        self.out = out
        self.numbers: dict[str, int] = {}
        self.by_number: dict[int, str] = {}
        self.started = trio.current_time()

    def say(self, text: str) -> None:
        self.out.write(f"[{trio.current_time() - self.started:9.3f}] {text}\n")
        self.out.flush()

    def observe(self, call: SimulatedCall, event: str) -> None:
        if event == "placed":
            number = len(self.numbers) + 1
            self.numbers[call.call_id] = number
            self.by_number[number] = call.call_id
        tag = f"#{self.numbers.get(call.call_id, '?')}"
        if event == "placed":
            kind = "dialled by the agent" if call.outbound else "placed"
            self.say(f"{tag} {kind} {call.caller} -> {call.callee} (call {call.call_id})")
        elif event == "ended" and call.result is not None:
            r = call.result
            self.say(
                f"{tag} ended by {r.ended_by} after {r.ended_at - r.placed_at:.1f} s: "
                f"caller {r.caller_audio_seconds:.1f} s, agent {r.agent_audio_seconds:.1f} s, "
                f"underruns {r.underruns}, commands "
                + (", ".join(f"{c.name}={c.error_code or 'ok'}" for c in r.commands) or "none")
            )
        elif event == "claimed":
            self.say(f"{tag} claimed ({call.sample_rate} Hz, {call.audio_mode})")
        else:
            self.say(f"{tag} {event}")

    def call_id(self, text: str) -> str:
        if text.lstrip("#").isdigit():
            number = int(text.lstrip("#"))
            if number not in self.by_number:
                raise LookupError(f"no call #{number}")
            return self.by_number[number]
        return text

    async def run(self, read_line: LineReader) -> None:
        self.say(f"simulator listening on {self.sim.base_url} (type 'help' for commands)")
        while True:
            line = await read_line()
            if not line:
                return  # end of input: keep serving without a console
            words = shlex.split(line)
            if not words:
                continue
            if words[0] in ("quit", "exit"):
                raise _Quit
            try:
                await self.command(words[0], words[1:])
            except (LookupError, ValueError, OSError, WSSError) as exc:
                self.say(f"error: {exc}")

    async def command(self, name: str, rest: list[str]) -> None:
        sim, faults = self.sim, self.sim.faults
        on = (rest[:1] or ["on"])[0] in ("on", "true", "1", "yes")
        if name == "help":
            self.out.write(HELP)
        elif name == "call":
            await sim.place_call(_script(rest), **_numbers(rest))
        elif name == "callee":
            if not rest:
                raise ValueError("callee needs a NUMBER")
            sim.expect_callee(rest[0], _script(rest[1:]))
        elif name in ("answer", "reject"):
            call = sim.get_call(self.call_id(rest[0]))
            if call is None:
                raise LookupError(f"no active call {rest[0]}")
            try:
                await (call.answer() if name == "answer" else call.reject())
            except RuntimeError as exc:
                raise ValueError(str(exc)) from None
        elif name == "hangup":
            call = sim.get_call(self.call_id(rest[0]))
            if call is None:
                raise LookupError(f"no active call {rest[0]}")
            await call.hang_up()
        elif name == "calls":
            for call in sim.active_calls():
                self.say(f"#{self.numbers.get(call.call_id, '?')} {call.state} {call.call_id}")
        elif name == "stats":
            self.say(repr(sim.statistics()))
        elif name == "drop-control":
            self.say(f"dropped {faults.drop_control()} control connection(s)")
        elif name == "stall-pings":
            faults.stall_pings(on)
        elif name == "drop-media":
            faults.drop_media(self.call_id(rest[0]))
        elif name == "delay-responses":
            faults.delay_responses(float(rest[0]))
        elif name == "drop-responses":
            faults.drop_responses(on)
        elif name == "reject-auth":
            faults.reject_auth(on)
        elif name == "slow-pulls":
            faults.slow_buffer_requests(float(rest[0]))
        elif name == "call-error":
            await faults.call_error(self.call_id(rest[0]), *rest[1:2])
        elif name == "delay-creates":
            faults.delay_creates(float(rest[0]))
        elif name == "refuse-creates":
            faults.refuse_creates(None if rest[0] == "off" else rest[0])
        elif name == "close-session":
            faults.close_session(self.call_id(rest[0]), *rest[1:2])
        elif name == "send-control":
            await faults.send_control(" ".join(rest))
        elif name == "send-media":
            await faults.send_media(self.call_id(rest[0]), " ".join(rest[1:]))
        elif name == "wa":
            sent = await sim.wa.send_from_user(rest[0], " ".join(rest[1:]))
            self.say(f"WhatsApp {rest[0]} -> agent (session {sent.session_id})")
        elif name == "wa-received":
            session = sim.wa.find(rest[0])
            if session is None:
                raise LookupError(f"no open WhatsApp session with {rest[0]}")
            for message in session.received:
                self.say(f"{message.message_id}: {json.dumps(message.data)}")
        elif name == "wa-fail":
            faults.fail_wa_messages(None if rest[0] == "off" else rest[0])
        elif name == "wa-delay":
            faults.delay_wa_acks(float(rest[0]))
        elif name == "wa-close":
            session = sim.wa.find(rest[0])
            if session is None:
                raise LookupError(f"no open WhatsApp session with {rest[0]}")
            sim.wa.close(session.session_id)
        elif name == "rest-fail":
            faults.fail_rest(None if rest[0] == "off" else int(rest[0]))
        else:
            raise ValueError(f"unknown command {name!r} (try 'help')")
        if name not in ("help", "calls", "stats", "call", "drop-control", "wa", "wa-received"):
            self.say(f"ok: {name} {' '.join(rest)}".rstrip())


class _Quit(Exception):
    pass


def _numbers(words: list[str]) -> dict[str, str]:
    options = dict(w.split("=", 1) for w in words if "=" in w)
    numbers = {}
    if "from" in options:
        numbers["caller"] = options["from"]
    if "to" in options:
        numbers["callee"] = options["to"]
    return numbers


def _script(words: list[str]) -> CallerScript:
    """The caller script of a console ``call`` command.

    Raises:
        ValueError: an unknown word or a bad value.
    """
    audio: AudioSource = tone(440)
    options: dict[str, Any] = {}
    keys = {
        "hangup": "hangup_after",
        "talk": "talk_for",
        "answer-after": "callee_answers_after",
        "hangup-before-answer": "hangup_before_answer_after",
        "hangup-when-silent": "hangup_after_agent_silent",
        "pickup": "answers_after",
    }
    position = 0
    while position < len(words):
        word = words[position]
        position += 1
        if "=" in word:
            key, value = word.split("=", 1)
            if key in keys:
                options[keys[key]] = None if value == "never" else float(value)
            elif key == "record":
                options["record_dir"] = Path(value)
            elif key not in ("from", "to"):
                raise ValueError(f"unknown option {key!r}")
        elif word == "silence":
            audio = silence()
        elif word == "reject":
            options["rejects"] = True
        elif word in ("tone", "noise", "wav") and position < len(words):
            value = words[position]
            position += 1
            if word == "tone":
                audio = tone(float(value))
            elif word == "noise":
                audio = noise(int(value))
            else:
                audio = wav_source(value)
        else:
            raise ValueError(f"unexpected {word!r} (try 'help')")
    return CallerScript(audio, **options)


async def _read_stdin() -> str:
    return await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)


async def run_simulate(
    args: argparse.Namespace,
    *,
    out: IO[str] = sys.stdout,
    read_line: LineReader | None = _read_stdin,
    frame_log: FrameLog | None = None,
    task_status: trio.TaskStatus[Simulator] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled or ``quit``; print every call as it happens.

    ``read_line`` supplies operator commands (``None``: no console).

    Raises:
        OSError: the port cannot be bound or a TLS file cannot be read.
        ssl.SSLError: a TLS file is not valid.
        ValueError: inconsistent options (e.g. ``--tls-key`` without ``--tls-cert``).
    """
    config = _config(args)
    async with open_simulator(
        config, listen=True, host=args.host, port=args.port, frame_log=frame_log
    ) as sim:
        console = _Console(sim, out)
        sim.add_observer(console.observe)
        task_status.started(sim)
        if read_line is None or args.no_console:
            console.say(f"simulator listening on {sim.base_url}")
            await trio.sleep_forever()
        try:
            await console.run(read_line)
        except _Quit:
            return
        await trio.sleep_forever()


def simulate_main(args: argparse.Namespace) -> int:
    """``telcoflow-trio simulate``: run the simulator until interrupted. Returns the exit code."""
    log_file = None
    try:
        if args.frame_log is not None:
            log_file = open(args.frame_log, "w", encoding="utf-8")  # noqa: SIM115
        frame_log = JsonLinesFrameLog(log_file) if log_file is not None else None
        run_command("telcoflow-trio simulate", partial(run_simulate, args, frame_log=frame_log))
    except KeyboardInterrupt:
        sys.stderr.write("telcoflow-trio simulate: interrupted\n")
        return 130
    except UsageError as exc:
        sys.stderr.write(f"telcoflow-trio simulate: {exc}\n")
        return 2
    except (OSError, ssl.SSLError, ValueError) as exc:
        sys.stderr.write(f"telcoflow-trio simulate: {exc}\n")
        return 1
    finally:
        if log_file is not None:
            log_file.close()
    return 0


def _client_ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not args.server.startswith("wss://"):
        return None
    context = ssl.create_default_context(cafile=args.ca_file)
    if args.cert is not None:
        context.load_cert_chain(args.cert, args.key)
    return context


async def run_call(args: argparse.Namespace, *, out: IO[str] = sys.stdout) -> dict[str, Any]:
    """Place one call as a softphone; print events and the result; return the result.

    Raises:
        OSError, ValueError: the WAV file cannot be read.
        WSSError: the simulator cannot be reached or refused the call.
    """

    def show(frame: dict[str, Any]) -> None:
        data = frame.get("data", {})
        if frame.get("type") == "call.placed":
            verb = "placed" if args.answer is None else "ringing: agent dialled"
            out.write(f"{verb} call {data.get('callId')}\n")
        elif frame.get("type") == "call.state":
            out.write(f"{data.get('state')} ({data.get('sampleRate')} Hz)\n")
        out.flush()

    call = await run_softphone(
        args.server,
        wav=args.wav,
        record=args.record,
        hangup_after=args.hangup_after,
        caller=args.caller,
        callee=args.callee,
        api_key=_api_key(args),
        connector_uuid=args.connector_uuid,
        ssl_context=_client_ssl_context(args),
        on_event=show,
        answer=args.answer,
    )
    out.write(json.dumps(call.result, indent=2) + "\n")
    if args.record is not None and call.sample_rate is not None:
        out.write(f"agent audio written to {args.record}\n")
    out.flush()
    return call.result


def call_main(args: argparse.Namespace) -> int:
    """``telcoflow-trio call``: place one call into a running simulator. Returns the exit code."""
    return command_status("telcoflow-trio call", partial(run_call, args))
