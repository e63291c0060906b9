"""The REST plane: listing and closing sessions, errors, auth, TLS-free loopback and memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing
import trustme
from trio.testing import MockClock

from telcoflow_trio import ChannelType, SessionInfo, TelcoflowClient, TelcoflowClientConfig, proto
from telcoflow_trio._rest import RestClient
from telcoflow_trio.exceptions import (
    WSSAuthenticationError,
    WSSConnectionError,
    WSSSessionError,
    WSSTLSError,
)
from telcoflow_trio.simulator import SimulatorConfig, open_simulator

from .conftest import client_config, open_pair
from .test_client_readme import write_pair


async def test_list_and_close(autojump_clock: MockClock) -> None:
    async with open_pair() as (_sim, client, _):
        a = await client.create_session(ChannelType.WA, "+15550100")
        await client.create_session(ChannelType.WA, "+15550101")
        found = await client.list_sessions(channel=ChannelType.WA, remote_address="+15550100")
        assert [s.id for s in found] == [a.id]
        (info,) = found
        assert isinstance(info, SessionInfo)
        assert (info.channel, info.initiator, info.state, info.remote_address) == (
            "WA",
            "SDK",
            "OPEN",
            "+15550100",
        )
        assert info.opened_at
        assert info.closed_at is None
        assert len(await client.list_sessions()) == 2
        assert await client.list_sessions(channel="TELCO") == []
        result = await client.close_session(a.id)
        assert result.reason == "SDK_REQUEST"
        assert result.closed_at
        with trio.fail_after(5):
            await a.wait_closed()
        assert [s.id for s in await client.list_sessions(state="CLOSED")] == [a.id]
        assert (await client.close_session(a.id)).reason == "NOT_FOUND"  # gone already
        assert (await client.close_session("no-such/session")).reason == "NOT_FOUND"
        with pytest.raises(ValueError, match="session_id"):
            await client.close_session("")
        with pytest.raises(ValueError, match="unknown channel"):
            await client.list_sessions(channel="SMS")


async def test_rest_only_while_the_client_is_open(autojump_clock: MockClock) -> None:
    """Before ``async with`` and after it, REST raises instead of making an HTTP
    client nobody would close."""
    async with open_simulator(SimulatorConfig(), listen=False) as sim:
        client = TelcoflowClient(client_config(sim), open_stream=sim.open_stream)
        with pytest.raises(RuntimeError, match="async with"):
            await client.list_sessions()
        async with client:
            assert await client.list_sessions() == []
        assert client._rest._http is None
        with pytest.raises(RuntimeError, match="async with"):
            await client.close_session("s-1")
        assert client._rest._http is None
        async with client:  # open again: REST again
            assert await client.list_sessions() == []


@pytest.mark.parametrize("transport", ["lean", "trio-websocket"])
async def test_list_and_close_on_each_server_transport(
    transport: str, autojump_clock: MockClock
) -> None:
    """The REST plane shares the WebSocket's host and port whichever implementation serves it."""
    async with open_pair(SimulatorConfig(transport=transport)) as (sim, client, _):
        a = await client.create_session(ChannelType.WA, "+15550100")
        assert [s.id for s in await client.list_sessions(remote_address="+15550100")] == [a.id]
        assert (await client.close_session(a.id)).reason == "SDK_REQUEST"
        with trio.fail_after(5):
            await a.wait_closed()
        assert [s.id for s in await client.list_sessions(state="CLOSED")] == [a.id]
        # The WebSocket side still works after the REST requests, on the same server.
        b = await client.create_session(ChannelType.WA, "+15550101")
        assert b.id != a.id
        assert sim.statistics().handler_errors == 0


async def test_rest_5xx_and_auth(autojump_clock: MockClock) -> None:
    async with open_pair() as (sim, client, opener):
        sim.faults.fail_rest(503)
        with pytest.raises(WSSSessionError, match=r"HTTP 503.*INTERNAL_ERROR \(injected fault\)"):
            await client.list_sessions()
        sim.faults.fail_rest(None)
        bad = TelcoflowClient(
            TelcoflowClientConfig.sandbox(
                "wrong-key-123", sim.connector_uuid, base_url=sim.base_url
            ),
            open_stream=opener,
        )
        bad._rest.open()  # its control connection would be refused: REST alone
        with pytest.raises(WSSAuthenticationError, match="UNAUTHORIZED"):
            await bad._rest.list_sessions(None, None, "OPEN")
        await bad._rest.aclose()
        opener.down = True
        with pytest.raises(WSSConnectionError, match="listing sessions failed"):
            await client.list_sessions()
    with pytest.raises(ValueError, match="5xx"):
        sim.faults.fail_rest(404)


async def test_over_loopback_and_plain_http_elsewhere(secret_scanner: object) -> None:
    with trio.fail_after(10):
        async with open_simulator(SimulatorConfig(), listen=True) as sim:
            assert sim.base_url.startswith("ws://127.0.0.1:")
            config = client_config(sim)
            rest = RestClient(config, open_stream=_tcp)
            rest.open()
            await sim.wa.send_from_user("+15550100", "hi")
            (info,) = await rest.list_sessions("WA", None, "OPEN")
            assert info.initiator == "CONNECTOR"
            assert "api" not in repr(rest).lower()
            await rest.aclose()
            base = proto.http_base_url(sim.base_url)
            async with httpx.AsyncClient() as plain:
                other = await plain.get(base + "/elsewhere")
                unauthenticated = await plain.get(base + proto.SESSIONS_PATH)
            assert other.status_code == 400
            assert unauthenticated.status_code == 401
            assert unauthenticated.json()["code"] == "UNAUTHORIZED"


async def _tcp(host: str, port: int, ssl_context: object) -> trio.abc.Stream:
    assert ssl_context is None
    return await trio.open_tcp_stream(host, port)


async def test_rest_over_mtls_verifies_the_server(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server_cert, server_key = write_pair(ca.issue_cert("simulator.invalid"), tmp_path, "server")
    client_cert, client_key = write_pair(ca.issue_cert("agent.example"), tmp_path, "client")
    sim_config = SimulatorConfig(tls_cert=server_cert, tls_key=server_key, tls_client_ca=ca_path)
    async with open_simulator(sim_config) as sim:
        await sim.wa.send_from_user("+15550100", "hi")
        trusted = TelcoflowClientConfig.production(
            str(client_cert), str(client_key), base_url=sim.base_url, ca_file=str(ca_path)
        )
        rest = RestClient(trusted, sim.open_stream)
        rest.open()
        (info,) = await rest.list_sessions("WA", None, "OPEN")
        assert info.remote_address == "+15550100"
        await rest.aclose()
        untrusted = RestClient(attrs.evolve(trusted, ca_file=None), sim.open_stream)
        untrusted.open()  # the system store: not our CA
        with pytest.raises(WSSTLSError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusted.list_sessions(None, None, None)
        await untrusted.aclose()


async def test_rest_timeout_and_no_secret_in_errors(
    autojump_clock: MockClock, secret_scanner: Any
) -> None:
    async with open_pair(request_timeout=3.0) as (sim, client, _):
        unanswered: list[trio.abc.Stream] = []  # the far ends: never read, never answered

        async def silent(host: str, port: int, ssl_context: object) -> trio.abc.Stream:
            ours, theirs = trio.testing.memory_stream_pair()
            unanswered.append(theirs)
            return ours

        stuck = RestClient(client._config, silent)
        stuck.open()
        t0 = trio.current_time()
        with pytest.raises(WSSConnectionError, match="no answer within 3 s") as timed_out:
            await stuck.list_sessions(None, None, "OPEN")
        assert trio.current_time() - t0 == pytest.approx(3)
        errors: list[BaseException] = [timed_out.value]
        sim.faults.fail_rest(500)
        with pytest.raises(WSSSessionError) as failed:
            await client.close_session("x")
        errors.append(failed.value)
        for error in errors:
            secret_scanner.check(str(error), "REST error")
            secret_scanner.check(repr(error), "REST error repr")
        secret_scanner.check(repr(stuck), "RestClient repr")
        await stuck.aclose()
