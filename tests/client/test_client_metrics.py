"""The metrics server over loopback: a real client against the simulator, real clock.

Requests go over a raw TCP socket (no HTTP client library needed), so malformed
requests can be sent too. No MockClock here: the server's socket is real.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from telcoflow_trio import ActiveCall, TelcoflowClient, metrics
from telcoflow_trio.metrics import ClientCollector, serve_metrics
from telcoflow_trio.simulator import CallerScript, tone
from telcoflow_trio.simulator._server import Simulator

from .conftest import open_pair


async def fetch(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is; the status, headers and body of the answer."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split(" ")[1]), {k.lower(): v for k, v in headers.items()}, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@asynccontextmanager
async def serving(
    client: TelcoflowClient,
) -> AsyncIterator[tuple[int, trio.Nursery]]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_metrics, client)
        yield port, nursery
        nursery.cancel_scope.cancel()


async def talk(call: ActiveCall) -> None:
    await call.answer()
    call.send_audio(bytes(call.sample_rate // 10 * 2))  # 100 ms
    await call.wait_terminated()


async def place_one(sim: Simulator) -> str:
    call = await sim.place_call(CallerScript(audio=tone(440), hangup_after=0.3))
    result = await call.wait_result()
    return result.ended_by


async def test_metrics_ready_and_healthz_over_loopback() -> None:
    with trio.fail_after(20):
        async with open_pair(handler=talk) as (sim, client, _), serving(client) as (port, _n):
            status, headers, body = await fetch(port, get("/ready"))
            assert (status, body) == (200, b"ready\n")
            await place_one(sim)
            await trio.sleep(0.05)
            status, headers, body = await fetch(port, get("/metrics"))
            assert status == 200
            assert headers["content-type"].startswith("text/plain; version=")
            assert headers["connection"] == "close"
            got = samples(body)
            stats = client.statistics()
            assert got[("telcoflow_client_connected", ())] == 1
            assert got[("telcoflow_client_claiming", ())] == 1
            assert got[("telcoflow_client_calls_received_total", ())] == 1
            assert got[("telcoflow_client_calls_outbound_total", ())] == 0
            ((reason, n),) = stats.calls_ended.items()
            assert got[("telcoflow_client_calls_ended_total", (("reason", reason),))] == n == 1
            assert got[("telcoflow_client_sessions_claimed_total", ())] == 1
            assert got[("telcoflow_client_claim_latency_seconds_count", ())] == 1
            le_inf = ("telcoflow_client_claim_latency_seconds_bucket", (("le", "+Inf"),))
            assert got[le_inf] == 1
            received = got[("telcoflow_client_audio_bytes_received_total", ())]
            assert received == stats.audio_bytes_received > 0
            sent = got[("telcoflow_client_audio_bytes_sent_total", ())]
            assert sent == stats.audio_bytes_sent == 4800  # the 100 ms at 24 kHz
            assert got[("telcoflow_client_send_buffer_bytes", ())] == 0
            status, _, body = await fetch(port, get("/healthz"))
            assert (status, body) == (200, b"ok\n")
            status, headers, body = await fetch(port, get("/metrics", "HEAD"))
            assert (status, body) == (200, b"")
            assert int(headers["content-length"]) > 0

            await client.disconnect()  # draining: no new calls
            status, _, body = await fetch(port, get("/ready"))
            assert (status, body) == (503, b"not ready\n")
            status, _, body = await fetch(port, get("/metrics"))
            assert samples(body)[("telcoflow_client_connected", ())] == 0
            assert (await fetch(port, get("/healthz")))[0] == 200


async def test_not_ready_without_a_handler() -> None:
    with trio.fail_after(20):
        async with open_pair() as (_, client, _o), serving(client) as (port, _n):
            assert client.statistics().connected
            assert (await fetch(port, get("/ready")))[0] == 503


async def test_bad_requests_are_answered_and_the_server_keeps_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "REQUEST_TIMEOUT", 0.5)
    with trio.fail_after(20):
        async with open_pair(handler=talk) as (_, client, _o), serving(client) as (port, _n):
            assert (await fetch(port, b"garbage\r\n\r\n"))[0] == 400
            assert (await fetch(port, b"GET / HTTP/1.1\r\n\r\n"))[0] == 400  # no Host
            huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
            assert (await fetch(port, huge))[0] == 431
            status, headers, _ = await fetch(port, get("/metrics", "POST"))
            assert (status, headers["allow"]) == (405, "GET, HEAD")
            assert (await fetch(port, get("/nope")))[0] == 404
            assert (await fetch(port, get("/ready?probe=1")))[0] == 200

            # A client that sends half a request and stalls is cut off in time,
            # and others are served meanwhile.
            stalled = await trio.open_tcp_stream("127.0.0.1", port)
            await stalled.send_all(b"GET /metrics HTTP/1.1\r\n")
            assert (await fetch(port, get("/healthz")))[0] == 200
            with trio.fail_after(2):
                assert await stalled.receive_some(100) == b""
            await stalled.aclose()
            # A client that vanishes mid-request does not stop the server.
            gone = await trio.open_tcp_stream("127.0.0.1", port)
            await gone.send_all(b"GET /met")
            await gone.aclose()
            assert (await fetch(port, get("/healthz")))[0] == 200


async def test_connections_beyond_the_limit_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "MAX_CONNECTIONS", 2)
    with trio.fail_after(20):
        async with open_pair() as (_, client, _o), serving(client) as (port, _n):
            idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
            await trio.sleep(0.1)
            extra = await trio.open_tcp_stream("127.0.0.1", port)
            with trio.fail_after(2):
                assert await extra.receive_some(100) == b""  # closed unanswered
            for stream in [*idle, extra]:
                await stream.aclose()
            await trio.sleep(0.1)
            assert (await fetch(port, get("/healthz")))[0] == 200


async def test_a_missing_prometheus_client_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    async with open_pair() as (_, client, _o):
        with pytest.raises(ImportError, match=r"telcoflow-trio\[metrics\]"):
            ClientCollector(client)
        with pytest.raises(ImportError, match="'metrics' extra"):
            await serve_metrics(client)
