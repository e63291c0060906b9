"""Security: TLS verification, mTLS with the wrong CA, and secrets kept out of text.

The suite-wide scan (``secret_scanner`` in ``tests/conftest.py``) fails any
test whose ``telcoflow_trio`` log lines hold a secret; the tests here check
that the scan works, then push secrets down the paths where they could leak:
rejected credentials, media URLs with credentials in them, reprs.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
import trustme

from telcoflow_trio import TelcoflowClient, TelcoflowClientConfig, events, proto
from telcoflow_trio.exceptions import WSSAuthenticationError, WSSConnectionError
from telcoflow_trio.simulator import CallerScript, SimulatorConfig, open_simulator

from .conftest import SCRIPTED_URL, ScriptedServer, client_tasks

pytestmark = pytest.mark.reliability

HOST = "simulator.invalid"


@attrs.frozen
class Pki:
    """Files of one CA: the CA certificate, a server certificate and a client one."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(folder: Path, name: str) -> Pki:
    ca = trustme.CA(organization_name=name)
    server = ca.issue_cert(HOST, "127.0.0.1")
    client = ca.issue_cert(f"agent@{name}.example")
    folder.mkdir()
    pki = Pki(
        *(folder / f for f in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"))
    )
    ca.cert_pem.write_to_path(pki.ca)
    server.cert_chain_pems[0].write_to_path(pki.server_cert)
    server.private_key_pem.write_to_path(pki.server_key)
    client.cert_chain_pems[0].write_to_path(pki.client_cert)
    client.private_key_pem.write_to_path(pki.client_key)
    return pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "good", "good")


@pytest.fixture
def other_pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "other", "other")


async def connect(config: TelcoflowClientConfig, open_stream: Any = None) -> TelcoflowClient:
    """Open a client and close it again; what it raises propagates."""
    client = TelcoflowClient(config, open_stream=open_stream)
    with trio.fail_after(30):
        async with client:
            assert client.statistics().connected
    return client


# -- TLS --------------------------------------------------------------------------------


def test_tls_verification_is_on_in_every_context(pki: Pki) -> None:
    for config in (
        TelcoflowClientConfig.sandbox("k" * 8, "c", base_url=f"wss://{HOST}"),
        TelcoflowClientConfig.production(str(pki.client_cert), str(pki.client_key)),
        TelcoflowClientConfig.production(
            str(pki.client_cert), str(pki.client_key), ca_file=str(pki.ca)
        ),
    ):
        context = config.ssl_context()
        assert context is not None
        assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


async def test_untrusted_server_certificate_is_refused(
    pki: Pki, autojump_clock: trio.testing.MockClock
) -> None:
    sim_config = SimulatorConfig(tls_cert=pki.server_cert, tls_key=pki.server_key)
    async with open_simulator(sim_config) as sim:
        assert sim.base_url == f"wss://{HOST}"
        untrusting = TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url
        )
        with pytest.raises(WSSAuthenticationError, match="TLS handshake"):
            await connect(untrusting, sim.open_stream)
        # Trusting the CA is what it takes (the same server, the same code path).
        trusting = attrs.evolve(untrusting, ca_file=str(pki.ca))
        await connect(trusting, sim.open_stream)
    assert client_tasks() == []


async def test_server_certificate_for_another_host_is_refused(
    pki: Pki, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    ca = trustme.CA()
    elsewhere = ca.issue_cert("elsewhere.example")
    cert, key, ca_file = tmp_path / "e.pem", tmp_path / "e.key", tmp_path / "eca.pem"
    elsewhere.cert_chain_pems[0].write_to_path(cert)
    elsewhere.private_key_pem.write_to_path(key)
    ca.cert_pem.write_to_path(ca_file)
    async with open_simulator(SimulatorConfig(tls_cert=cert, tls_key=key)) as sim:
        config = TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url, ca_file=str(ca_file)
        )
        with pytest.raises(WSSAuthenticationError, match="TLS handshake"):
            await connect(config, sim.open_stream)


async def test_untrusted_certificate_over_loopback_is_refused(pki: Pki) -> None:
    # Real sockets and real time: the same refusal on a TCP connection.
    sim_config = SimulatorConfig(tls_cert=pki.server_cert, tls_key=pki.server_key)
    async with open_simulator(sim_config, listen=True) as sim:
        assert sim.base_url.startswith("wss://127.0.0.1:")
        config = TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url, connect_timeout=5
        )
        with pytest.raises(WSSAuthenticationError):
            await connect(config)
        await connect(attrs.evolve(config, ca_file=str(pki.ca)))


# -- mTLS -------------------------------------------------------------------------------


def mtls_simulator(pki: Pki) -> SimulatorConfig:
    return SimulatorConfig(tls_cert=pki.server_cert, tls_key=pki.server_key, tls_client_ca=pki.ca)


def production(pki: Pki, client: Pki, base_url: str, **options: Any) -> TelcoflowClientConfig:
    return TelcoflowClientConfig.production(
        str(client.client_cert),
        str(client.client_key),
        base_url=base_url,
        ca_file=str(pki.ca),
        **options,
    )


async def test_mtls_client_certificate_from_the_wrong_ca_is_refused(
    pki: Pki, other_pki: Pki, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_simulator(mtls_simulator(pki)) as sim:
        with pytest.raises(WSSAuthenticationError):
            await connect(production(pki, other_pki, sim.base_url), sim.open_stream)
        assert sim.statistics().control_connections_total == 0
        # The certificate of the right CA gets in, and so do its calls' media.
        seen: list[str] = []
        client = TelcoflowClient(production(pki, pki, sim.base_url), open_stream=sim.open_stream)

        @client.on(events.INCOMING_CALL)
        async def answer(call: Any) -> None:
            await call.answer()
            seen.append(call.call_id)

        with trio.fail_after(30):
            async with client:
                simulated = await sim.place_call(CallerScript(hangup_after=1))
                result = await simulated.wait_result()
        assert seen == [simulated.call_id]
        assert result.answered_at is not None


async def test_mtls_wrong_ca_over_loopback_is_refused_and_not_retried(
    pki: Pki, other_pki: Pki
) -> None:
    async with open_simulator(mtls_simulator(pki), listen=True) as sim:
        config = production(pki, other_pki, sim.base_url, connect_timeout=5)
        client = TelcoflowClient(config)
        with trio.fail_after(10), pytest.raises(WSSAuthenticationError):
            await client.run_forever()  # the first attempt fails for good
        await connect(production(pki, pki, sim.base_url, connect_timeout=5))


# -- secrets ----------------------------------------------------------------------------


def test_the_scan_finds_secrets_in_log_lines(secret_scanner: Any) -> None:
    secret_scanner.register("registered-secret-value")
    token = "ab" * 32
    secret_scanner.register(token)
    logger = logging.getLogger("telcoflow_trio.tests")
    logger.debug("harmless %s", "text")
    assert secret_scanner.leaks == []
    logger.debug("a key %s in a line", "registered-secret-value")
    logger.info("a token %s", f"x{token}y")
    logger.warning("a header: Bearer %s", "eyJhbGciOi.fake.jwt")
    try:
        raise ValueError("-----BEGIN RSA PRIVATE KEY----- MII...")
    except ValueError:
        logger.exception("failed")
    leaks = list(secret_scanner.leaks)
    secret_scanner.forget()  # the leaks above were on purpose
    assert len(leaks) == 4, leaks
    assert not any("registered-secret-value" in leak or token in leak for leak in leaks)


def test_reprs_hold_no_secrets(pki: Pki, secret_scanner: Any) -> None:
    sandbox = TelcoflowClientConfig.sandbox("sandbox-secret-key", "conn")
    mtls = TelcoflowClientConfig.production(str(pki.client_cert), str(pki.client_key))
    call_in = proto.CallIn("s", "c", "+1", "+2", "ws://x/m", "call-in-secret-token")
    secret_scanner.register(call_in.token)
    sim_config = SimulatorConfig(api_key="simulator-secret-key")
    for value in (sandbox, mtls, call_in, sim_config):
        secret_scanner.check(repr(value), f"repr of {type(value).__name__}")
        secret_scanner.check(str(value), f"str of {type(value).__name__}")
    assert str(pki.client_key) not in repr(mtls)  # key paths are redacted too


async def test_rejected_credentials_stay_out_of_errors_and_logs(
    secret_scanner: Any, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_simulator() as sim:
        wrong = TelcoflowClientConfig.sandbox(
            "wrong-but-still-secret-key", sim.connector_uuid, base_url=sim.base_url
        )
        with pytest.raises(WSSAuthenticationError) as info:
            await connect(wrong, sim.open_stream)
        secret_scanner.check(f"{info.value!r} {info.value}", "auth error")
        sim.faults.reject_auth()
        right = TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url
        )
        with pytest.raises(WSSAuthenticationError) as info:
            await connect(right, sim.open_stream)
        secret_scanner.check(f"{info.value!r} {info.value}", "auth error")


async def test_media_url_credentials_and_tokens_stay_out_of_logs(
    secret_scanner: Any, autojump_clock: trio.testing.MockClock
) -> None:
    """A call.in whose media cannot be opened: the error is logged, its secrets not."""
    secret_scanner.register("url-password-value")
    secret_scanner.register("query-token-value")
    secret_scanner.register("bearer-token-value")
    done = trio.Event()

    async def script(ws: Any) -> None:
        if ws.path != "/v1/agent/session-manager":
            return
        await ws.get_message()  # setup
        await ws.send_message(proto.SetupDone("sm").encode())
        for n, scheme in enumerate(("ftp", "ws")):  # refused locally; opened, then closed
            url = f"{scheme}://agent:url-password-value@media.invalid/m?token=query-token-value"
            call_in = proto.CallIn(f"s{n}", f"c{n}", "+1", "+2", url, "bearer-token-value")
            await ws.send_message(call_in.encode())
        await trio.sleep(1)
        done.set()
        while True:
            await ws.get_message()

    async with trio.open_nursery() as nursery:
        server = ScriptedServer(nursery, script)
        config = TelcoflowClientConfig.sandbox(
            "scripted-api-key", "conn", base_url=SCRIPTED_URL, sample_rate=8000
        )
        client = TelcoflowClient(config, open_stream=server.open_stream)
        client.on(events.INCOMING_CALL)(lambda call: None)
        with trio.fail_after(30):
            async with client:
                await done.wait()
                stats = client.statistics()
                assert (stats.calls_total, stats.calls_failed) == (2, 1)
    assert server.errors == []


async def test_first_connection_failure_names_no_secret(
    secret_scanner: Any, autojump_clock: trio.testing.MockClock
) -> None:
    async def refuse(host: str, port: int, context: ssl.SSLContext | None) -> trio.abc.Stream:
        raise ConnectionRefusedError("refused")

    config = TelcoflowClientConfig.sandbox(
        "refused-secret-key", "conn", base_url="ws://user:url-secret@host.invalid"
    )
    secret_scanner.register("url-secret")
    with pytest.raises(WSSConnectionError) as info:
        await connect(config, refuse)
    secret_scanner.check(f"{info.value!r} {info.value}", "connection error")
