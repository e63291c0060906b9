"""Exact frames and headers, against a scripted control server (no simulator)."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import trio_websocket

from telcoflow_trio import ActiveCall, TelcoflowClient, TelcoflowClientConfig, events, proto
from telcoflow_trio._control import MAX_CLAIMS_IN_FLIGHT
from telcoflow_trio.exceptions import WSSConnectionClosed
from telcoflow_trio.ws._transport import WebSocket


@attrs.define
class FakeControl:
    """Accepts control connections, answers setup and session.open, records frames."""

    nursery: trio.Nursery
    t0: float = attrs.Factory(trio.current_time)
    headers: list[dict[str, str]] = attrs.Factory(list)
    received: list[tuple[float, Any]] = attrs.Factory(list)
    ws: WebSocket | None = None

    async def open_stream(self, host: str, port: int, ssl_context: object) -> trio.abc.Stream:
        client_end, server_end = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self._serve, server_end)
        return client_end

    async def _serve(self, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:
            request = await trio_websocket.wrap_server_stream(nursery, stream)
            self.headers.append({k.decode(): v.decode() for k, v in request.headers})
            ws = self.ws = WebSocket(await request.accept())
            try:
                while True:
                    frame = proto.decode_control(await ws.get_message())
                    self.received.append((trio.current_time() - self.t0, frame))
                    if isinstance(frame, proto.Setup):
                        await ws.send_message(proto.SetupDone("fake-1").encode())
                    elif isinstance(frame, proto.SessionOpen):
                        response = proto.Response(frame.req_id, True, {"session": {}})
                        await ws.send_message(response.encode())
            except WSSConnectionClosed:
                pass
            nursery.cancel_scope.cancel()

    def frames(self, kind: type) -> list[tuple[float, Any]]:
        return [(t, f) for t, f in self.received if isinstance(f, kind)]


def config(**options: Any) -> TelcoflowClientConfig:
    return TelcoflowClientConfig.sandbox(
        "the-key", "the-connector", base_url="ws://fake.invalid", **options
    )


async def test_d27_headers_and_setup_frame(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        server = FakeControl(nursery)
        async with TelcoflowClient(config(sample_rate=16000), open_stream=server.open_stream):
            pass
        custom = config(sdk_version="0.24.0", audio_mode="isolated")
        async with TelcoflowClient(custom, open_stream=server.open_stream):
            pass
    first, second = server.headers
    assert first["x-sdk-version"] == "1.0.0"  # an accepted protocol version, not 0.0.0
    assert (first["x-api-key"], first["x-connector-uuid"]) == ("the-key", "the-connector")
    assert second["x-sdk-version"] == "0.24.0"
    setups = [f for _, f in server.frames(proto.Setup)]
    assert setups == [proto.Setup(16000, "mixed"), proto.Setup(24000, "isolated")]


async def test_d25_ready_without_call_in_is_bounded(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio.open_nursery() as nursery:
        server = FakeControl(nursery)
        client = TelcoflowClient(config(request_timeout=30), open_stream=server.open_stream)
        client.on(events.INCOMING_CALL)(lambda call: None)
        async with client:
            assert server.ws is not None
            notify = proto.SessionNotify("s-1", "TELCO").encode()
            await server.ws.send_message(notify)
            await server.ws.send_message(notify)  # a duplicate while claiming: ignored
            await trio.sleep(40)
            await server.ws.send_message(notify)  # the claim was dropped: claim again
            await trio.sleep(1)
    opens = [(t, f.session_id) for t, f in server.frames(proto.SessionOpen)]
    readies = [(t, f.session_id) for t, f in server.frames(proto.SessionReady)]
    assert opens == [(0, "s-1"), (40, "s-1")]
    assert readies == [(0, "s-1"), (40, "s-1")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no call.in within 30 s" in w for w in warnings)


async def test_a_won_claim_holds_its_slot_until_call_in_or_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The platform owes a won claim its call.in (no other worker gets that call), so it
    counts for ``max_calls`` until the call.in, the session's close, or the warning at
    ``request_timeout``; then the offer declined meanwhile is claimed."""
    async with trio.open_nursery() as nursery:
        server = FakeControl(nursery)
        client = TelcoflowClient(
            config(request_timeout=30, max_calls=1), open_stream=server.open_stream
        )
        client.on(events.INCOMING_CALL)(lambda call: None)
        async with client:
            assert server.ws is not None
            await server.ws.send_message(proto.SessionNotify("s-1", "TELCO").encode())
            await trio.sleep(1)
            await server.ws.send_message(proto.SessionNotify("s-2", "TELCO").encode())
            await trio.sleep(4)
            assert client.statistics().sessions_full == 1
            await server.ws.send_message(proto.SessionClosed("s-1", "FORCE_CLOSE").encode())
            await trio.sleep(1)
            await server.ws.send_message(proto.SessionNotify("s-3", "TELCO").encode())
            await trio.sleep(40)
    opens = [(t, f.session_id) for t, f in server.frames(proto.SessionOpen)]
    assert opens == [(0, "s-1"), (5, "s-2"), (35, "s-3")]
    assert client.statistics().sessions_full == 2


async def test_other_channels_and_activities(autojump_clock: trio.testing.MockClock) -> None:
    handled: list[ActiveCall] = []
    async with trio.open_nursery() as nursery:
        server = FakeControl(nursery)
        client = TelcoflowClient(config(), open_stream=server.open_stream)
        client.on(events.INCOMING_CALL)(handled.append)
        async with client:
            assert server.ws is not None
            await server.ws.send_message(proto.SessionNotify("wa-1", "WA").encode())
            refused = proto.Response("unknown-req", False, error_code="SESSION_BUSY")
            await server.ws.send_message(refused.encode())  # an answer nobody asked for
            await trio.sleep(1)
            assert client.statistics().connected
    assert server.frames(proto.SessionOpen) == []
    assert handled == []


async def test_calls_notified_before_the_handler_are_claimed_once_it_is_set(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        server = FakeControl(nursery)
        client = TelcoflowClient(config(), open_stream=server.open_stream)
        async with client:
            assert server.ws is not None
            await server.ws.send_message(proto.SessionNotify("early", "TELCO").encode())
            await trio.sleep(1)
            assert server.frames(proto.SessionOpen) == []  # no handler: not ours to take
            client.on(events.INCOMING_CALL)(lambda call: None)
            await trio.sleep(1)
    assert [(t, f.session_id) for t, f in server.frames(proto.SessionOpen)] == [(1, "early")]


async def test_a_notification_flood_claims_a_bounded_number_at_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that floods notifications cannot make the client start unbounded work."""
    async with trio.open_nursery() as nursery:
        server = FakeControl(nursery)  # answers no session.open: every claim stays in flight
        client = TelcoflowClient(config(), open_stream=server.open_stream)
        client.on(events.INCOMING_CALL)(lambda call: None)
        async with client:
            assert server.ws is not None
            for n in range(MAX_CLAIMS_IN_FLIGHT + 50):
                await server.ws.send_message(proto.SessionNotify(f"s-{n}", "TELCO").encode())
            await trio.sleep(1)
            assert len(server.frames(proto.SessionOpen)) == MAX_CLAIMS_IN_FLIGHT
    assert any("claims in flight" in r.getMessage() for r in caplog.records)
