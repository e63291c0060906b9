"""The README example, verbatim, over loopback TCP: under trio and under anyio.

These run on the real clock (a real socket is the point); the calls are short.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
import trio.testing
import trustme

from telcoflow_trio import ActiveCall, TelcoflowClient, TelcoflowClientConfig, events
from telcoflow_trio.exceptions import WSSAuthenticationError, WSSConnectionError
from telcoflow_trio.simulator import CallerScript, SimulatorConfig, open_simulator, tone

from .conftest import client_tasks


def readme_main(api_key: str, connector_uuid: str, base_url: str) -> Callable[[], Awaitable[None]]:
    async def main() -> None:
        # --- the README example, unchanged except for the values ---------------
        config = TelcoflowClientConfig.sandbox(
            api_key=api_key,
            connector_uuid=connector_uuid,
            sample_rate=24000,
            base_url=base_url,
        )
        async with TelcoflowClient(config) as client:

            @client.on(events.INCOMING_CALL)
            async def on_call(call: ActiveCall) -> None:
                await call.answer()
                async for chunk in call.audio_stream():
                    call.send_audio(chunk)

            await client.run_forever()
        # -------------------------------------------------------------------------

    return main


async def run_readme_against_loopback_simulator() -> Any:
    async with open_simulator(SimulatorConfig(), listen=True) as sim:
        assert sim.base_url.startswith("ws://127.0.0.1:")
        main = readme_main(sim.api_key, sim.connector_uuid, sim.base_url)
        # Placed first: the simulator notifies the client once it connects.
        call = await sim.place_call(CallerScript(audio=tone(440), hangup_after=0.4))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(main)
            with trio.fail_after(10):
                result = await call.wait_result()
            nursery.cancel_scope.cancel()  # like Ctrl-C on run_forever()
    assert client_tasks() == []
    return result


def check_echo(result: Any) -> None:
    assert result.ended_by == "caller_hangup"
    assert [c.name for c in result.commands] == ["call.answer"]
    assert result.agent_audio_seconds > 0.2
    caller = b"".join(itertools.islice(tone(440).frames(24000, 960), 100))
    assert result.agent_audio == caller[: len(result.agent_audio)]


async def test_readme_example_under_trio() -> None:
    check_echo(await run_readme_against_loopback_simulator())


def test_readme_example_under_anyio() -> None:
    results: list[Any] = []

    async def main() -> None:
        results.append(await run_readme_against_loopback_simulator())

    anyio.run(main, backend="trio")
    check_echo(results[0])


def write_pair(cert: trustme.LeafCert, directory: Path, name: str) -> tuple[Path, Path]:
    chain, key = directory / f"{name}.pem", directory / f"{name}.key"
    for blob in cert.cert_chain_pems:
        blob.write_to_path(str(chain), append=True)
    cert.private_key_pem.write_to_path(str(key))
    return chain, key


async def test_mtls_control_and_media(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server_cert, server_key = write_pair(ca.issue_cert("simulator.invalid"), tmp_path, "server")
    client_cert, client_key = write_pair(ca.issue_cert("agent.example"), tmp_path, "client")
    rogue_cert, rogue_key = write_pair(trustme.CA().issue_cert("x.example"), tmp_path, "rogue")
    sim_config = SimulatorConfig(tls_cert=server_cert, tls_key=server_key, tls_client_ca=ca_path)
    async with open_simulator(sim_config) as sim:
        assert sim.base_url.startswith("wss://")
        config = TelcoflowClientConfig.production(
            str(client_cert), str(client_key), base_url=sim.base_url, ca_file=str(ca_path)
        )
        client = TelcoflowClient(config, open_stream=sim.open_stream)

        @client.on(events.INCOMING_CALL)
        async def on_call(call: ActiveCall) -> None:
            await call.answer()
            await call.disconnect()

        async with client:
            call = await sim.place_call()
            result = await call.wait_result()
        assert result.ended_by == "agent_disconnect"  # media ran over TLS too

        rogue = TelcoflowClientConfig.production(
            str(rogue_cert), str(rogue_key), base_url=sim.base_url, ca_file=str(ca_path)
        )
        # TLS 1.3 tells the client about a refused certificate only after its
        # side of the handshake, and trio-websocket then waits for a response
        # that never comes (spec trio-ecosystem note B): bounded by connect_timeout.
        with pytest.raises((WSSAuthenticationError, WSSConnectionError)):
            async with TelcoflowClient(rogue, open_stream=sim.open_stream):
                pass
        missing = TelcoflowClientConfig.production(
            str(tmp_path / "nope.pem"), str(tmp_path / "nope.key"), base_url=sim.base_url
        )
        with pytest.raises(WSSAuthenticationError, match="client certificate"):
            async with TelcoflowClient(missing, open_stream=sim.open_stream):
                pass


async def test_media_connections_share_the_control_tls_context(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three calls over ``wss://`` load the CA file once (the control connection's
    context), not once per call: a context costs about 0.5 ms of CPU to make."""
    ca = trustme.CA()
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert, key = write_pair(ca.issue_cert("simulator.invalid"), tmp_path, "server")
    made: list[object] = []
    original = TelcoflowClientConfig.ssl_context

    def counting(self: TelcoflowClientConfig) -> Any:
        context = original(self)
        made.append(context)
        return context

    monkeypatch.setattr(TelcoflowClientConfig, "ssl_context", counting)
    callee = CallerScript(audio=tone(440), answers_after=0.0, hangup_after=30.0)
    sim_config = SimulatorConfig(tls_cert=cert, tls_key=key, callee_script=callee)
    async with open_simulator(sim_config) as sim:
        config = TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url, ca_file=str(ca_path)
        )
        heard = 0
        with trio.fail_after(10):
            async with TelcoflowClient(config, open_stream=sim.open_stream) as client:
                for number in ("+15550101", "+15550102", "+15550103"):
                    async with client.place_call(number) as call:
                        async for _ in call.audio_stream():
                            heard += 1  # the media ran over TLS
                            break
    assert heard == 3
    assert len(made) == 1
