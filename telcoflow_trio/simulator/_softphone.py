"""The softphone: place a call into a running simulator from outside it.

The simulator has a caller-side endpoint of its own (``/v1/simulator/call``,
with the same API-key headers as the control plane). The protocol is small:

1. the softphone sends its audio (PCM16LE mono) as binary messages, then
   ``{"type": "dial", "data": {"sampleRate": ..., "caller": ..., "callee": ...,
   "hangupAfter": ..., "talkFor": ..., "hangupBeforeAnswerAfter": ...,
   "hangupAfterAgentSilent": ..., "calleeAnswersAfter": ...}}``;
2. the simulator places the call with that audio as the caller's script and
   answers ``call.placed``; then ``call.state`` on every state change (with the
   call's ``sampleRate``), and the agent's audio as binary messages as it is
   played out;
3. ``{"type": "hangup"}`` (or closing the socket) hangs up;
4. at the end the simulator sends ``call.result`` (:meth:`CallResult.summary`)
   and closes with 1000.

To be the callee of an outbound call instead, the softphone sends ``{"type":
"answer", "data": {"number": ..., "sampleRate": ..., "answersAfter": ...,
"hangupAfter": ..., "talkFor": ...}}`` in place of ``dial``: the next outbound
call an agent places to ``number`` rings it, is answered after ``answersAfter``
seconds (default 1) with the uploaded audio as the callee's voice, and goes on
as from step 2 (``call.placed`` once the agent has dialled).
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from ..exceptions import WSSConnectionClosed
from ..ws._streams import StreamOpener, open_tcp
from ..ws._transport import open_websocket
from ._audio import pcm_source, read_wav, silence, write_wav
from ._call import CallObserver, SimulatedCall
from ._connection import Connection
from ._model import DEFAULT_API_KEY, DEFAULT_CONNECTOR_UUID, CallerScript, SimulatorConfig

__all__ = ["SoftphoneHost", "run_softphone", "serve_softphone"]

logger = logging.getLogger(__name__)


class SoftphoneHost(Protocol):
    """What a softphone connection needs of its simulator (the ``Simulator`` is one)."""

    config: SimulatorConfig

    async def place_call(
        self, script: CallerScript | None = None, *, caller: str = ..., callee: str = ...
    ) -> SimulatedCall: ...

    def expect_callee(self, remote_address: str, script: CallerScript) -> None: ...

    def forget_callee(self, remote_address: str, script: CallerScript) -> None: ...

    def add_observer(self, observer: CallObserver) -> None: ...

    def remove_observer(self, observer: CallObserver) -> None: ...


#: Bound on the upload-and-dial phase.
_DIAL_TIMEOUT = 60.0
#: Messages queued towards a softphone before agent audio is dropped.
_OUTBOX = 256
_UPLOAD_CHUNK = 256 << 10
#: The softphone hangs up this long after its WAV file has played, unless told otherwise.
_LINGER = 2.0

_SCRIPT_FIELDS = {
    "talkFor": "talk_for",
    "hangupAfter": "hangup_after",
    "hangupBeforeAnswerAfter": "hangup_before_answer_after",
    "hangupAfterAgentSilent": "hangup_after_agent_silent",
    "calleeAnswersAfter": "callee_answers_after",
    "answersAfter": "answers_after",
}


def _dial_script(data: dict[str, Any], upload: bytes) -> CallerScript:
    """The caller script a ``dial`` frame asks for.

    Raises:
        ValueError, TypeError: a field is missing or has the wrong type.
    """
    rate = data.get("sampleRate", 16000)
    if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 48000:
        raise ValueError(f"sampleRate must be an integer from 8000 to 48000, got {rate!r}")
    options = {name: data[key] for key, name in _SCRIPT_FIELDS.items() if key in data}
    if "calleeAnswersAfter" not in data:
        options["callee_answers_after"] = 1.0
    audio = pcm_source(upload, rate) if len(upload) >= 2 else silence()
    return CallerScript(audio, **options)


async def serve_softphone(sim: SoftphoneHost, conn: Connection) -> None:
    """Handle one softphone connection (see the module docstring)."""
    with contextlib.suppress(WSSConnectionClosed):
        await _dial_and_relay(sim, conn)


async def _dial_and_relay(sim: SoftphoneHost, conn: Connection) -> None:
    upload = bytearray()
    dial: dict[str, Any] | None = None
    answering = False
    with trio.move_on_after(_DIAL_TIMEOUT):
        while dial is None:
            message = await conn.receive()
            if isinstance(message, bytes):
                upload += message
                if len(upload) > sim.config.max_upload_bytes:
                    conn.close(1009, f"upload larger than {sim.config.max_upload_bytes} bytes")
                    return
                continue
            try:
                obj = json.loads(message)
            except ValueError:
                obj = None
            if not isinstance(obj, dict) or obj.get("type") not in ("dial", "answer"):
                conn.close(1008, "expected audio, then a dial or answer frame")
                return
            data = obj.get("data")
            dial = data if isinstance(data, dict) else {}
            answering = obj["type"] == "answer"
    if dial is None:
        conn.close(1008, f"no dial frame within {_DIAL_TIMEOUT:g} s")
        return
    try:
        script = _dial_script(dial, bytes(upload))
        caller = str(dial.get("caller", "+15550100"))
        callee = str(dial.get("callee", "+15550199"))
    except (TypeError, ValueError) as exc:
        conn.close(1008, f"bad dial frame: {exc}")
        return
    del upload
    if answering:
        number = str(dial.get("number", "+15550100"))
        answered = await _wait_outbound(sim, conn, number, script)
        if answered is None:
            return
        call = answered
    else:
        call = await sim.place_call(script, caller=caller, callee=callee)
    logger.info(
        "softphone %s %s call %s", conn.name, "got" if answering else "placed", call.call_id
    )
    try:
        placed = {"callId": call.call_id, "sessionId": call.session_id}
        await conn.send(json.dumps({"type": "call.placed", "data": placed}))
        await _relay_call(sim, conn, call)
    finally:
        await call.hang_up()  # a no-op if it has ended


async def _wait_outbound(
    sim: SoftphoneHost, conn: Connection, number: str, script: CallerScript
) -> SimulatedCall | None:
    """Be the callee of the next outbound call to ``number``; ``None`` if the softphone left."""
    found: list[SimulatedCall] = []
    placed = trio.Event()

    def observe(call: SimulatedCall, event: str) -> None:
        if event == "placed" and call.script is script:
            found.append(call)
            placed.set()

    async def until_left(scope: trio.CancelScope) -> None:
        with contextlib.suppress(WSSConnectionClosed):
            while '"hangup"' not in str(await conn.receive()):
                pass
        scope.cancel()

    sim.add_observer(observe)
    sim.expect_callee(number, script)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(until_left, nursery.cancel_scope)
            await placed.wait()
            nursery.cancel_scope.cancel()
    finally:
        sim.remove_observer(observe)
        sim.forget_callee(number, script)
    return found[0] if found else None


async def _relay_call(sim: SoftphoneHost, conn: Connection, call: SimulatedCall) -> None:
    send, receive = trio.open_memory_channel[str | bytes](_OUTBOX)

    def offer(item: str | bytes) -> None:
        # A slow softphone loses audio, never the call.
        with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
            send.send_nowait(item)

    def observe(observed: SimulatedCall, event: str) -> None:
        if observed is call and event in ("ANSWERED", "CONNECTED", "DISCONNECTED"):
            data = {"state": event, "sampleRate": call.sample_rate, "t": trio.current_time()}
            offer(json.dumps({"type": "call.state", "data": data}))

    async def listen_for_hangup() -> None:
        try:
            while True:
                message = await conn.receive()
                if isinstance(message, str) and '"hangup"' in message:
                    break
        except WSSConnectionClosed:
            pass
        await call.hang_up()

    async def report_result() -> None:
        result = await call.wait_result()
        async with send:
            await send.send(json.dumps({"type": "call.result", "data": result.summary()}))

    sim.add_observer(observe)
    call._tap = offer
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen_for_hangup)
            nursery.start_soon(report_result)
            async with receive:
                async for item in receive:
                    if conn.peer_closed:
                        continue
                    try:
                        await conn.send(item)
                    except WSSConnectionClosed:
                        conn.peer_closed = True
                        await call.hang_up()
            nursery.cancel_scope.cancel()
    finally:
        call._tap = None
        sim.remove_observer(observe)


@attrs.frozen
class SoftphoneCall:
    """What the softphone saw: the simulator's result summary and the agent's audio."""

    result: dict[str, Any]
    agent_audio: bytes = attrs.field(repr=lambda audio: f"<{len(audio)} bytes>")
    sample_rate: int | None


async def run_softphone(
    server_url: str,
    *,
    wav: Path | None = None,
    record: Path | None = None,
    hangup_after: float | None = None,
    caller: str = "+15550100",
    callee: str = "+15550199",
    api_key: str = DEFAULT_API_KEY,
    connector_uuid: str = DEFAULT_CONNECTOR_UUID,
    ssl_context: ssl.SSLContext | None = None,
    open_stream: StreamOpener = open_tcp,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    extra: dict[str, Any] | None = None,
    answer: str | None = None,
) -> SoftphoneCall:
    """Place a call into the simulator at ``server_url`` and play ``wav`` as the caller.

    With ``answer`` (a number), be the callee of the next outbound call an agent
    places to that number instead, ``wav`` being what the callee says.

    Returns when the call has ended: ``hangup_after`` seconds after the answer
    (default: 2 s after ``wav`` has played; without ``wav``, when the agent
    ends the call). ``record`` receives the agent's audio as
    played out (a WAV at the call's rate). ``on_event`` sees every JSON frame.
    ``extra`` adds fields to the ``dial`` frame (see the module docstring).

    Raises:
        OSError, ValueError: ``wav`` cannot be read or is not 16-bit PCM.
        WSSAuthenticationError: the simulator refused the credentials.
        WSSConnectionError: the simulator could not be reached, or the connection
            ended before the call's result arrived.
    """
    pcm, rate = read_wav(wav) if wav is not None else (b"", 16000)
    dial: dict[str, Any] = {"sampleRate": rate, "caller": caller, "callee": callee}
    if answer is not None:
        dial["number"] = answer
    if hangup_after is None and pcm:
        hangup_after = len(pcm) / (2 * rate) + _LINGER
    if hangup_after is not None:
        dial["hangupAfter"] = hangup_after
    dial.update(extra or {})
    headers = [("x-api-key", api_key), ("x-connector-uuid", connector_uuid)]
    url = server_url.rstrip("/") + "/v1/simulator/call"
    audio = bytearray()
    call_rate: int | None = None
    result: dict[str, Any] | None = None
    async with open_websocket(
        url, headers=headers, ssl_context=ssl_context, open_stream=open_stream
    ) as ws:
        for start in range(0, len(pcm), _UPLOAD_CHUNK):
            await ws.send_message(pcm[start : start + _UPLOAD_CHUNK])
        kind = "dial" if answer is None else "answer"
        await ws.send_message(json.dumps({"type": kind, "data": dial}))
        while result is None:
            message = await ws.get_message()
            if isinstance(message, bytes):
                audio += message
                continue
            frame = json.loads(message)
            if on_event is not None:
                on_event(frame)
            data = frame.get("data") or {}
            if frame.get("type") == "call.state" and data.get("sampleRate"):
                call_rate = data["sampleRate"]
            elif frame.get("type") == "call.result":
                result = data
    if record is not None and call_rate is not None:
        await trio.to_thread.run_sync(write_wav, record, bytes(audio), call_rate)
    return SoftphoneCall(result, bytes(audio), call_rate)
