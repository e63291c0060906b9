"""The simulator as a server: authentication, TLS, bad clients, loopback, shutdown, tools."""

from __future__ import annotations

import io
import json
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from telcoflow_trio.exceptions import (
    WSSAuthenticationError,
    WSSConnectionClosed,
    WSSConnectionError,
    WSSError,
)
from telcoflow_trio.proto import (
    BufferRequest,
    CallIn,
    CallState,
    Response,
    SessionClosed,
    SessionNotify,
    Setup,
    UnknownFrame,
)
from telcoflow_trio.simulator import (
    CONTROL_PATH,
    CallerScript,
    JsonLinesFrameLog,
    SimulatorConfig,
    open_simulator,
    run_softphone,
    serve_simulator,
    tone,
)
from telcoflow_trio.simulator._audio import write_wav
from telcoflow_trio.simulator._connection import ReplayStream
from telcoflow_trio.ws._transport import open_websocket

from .simclient import open_control, open_media

# -- authentication ------------------------------------------------------------------------


async def test_bad_credentials_get_401_and_no_secret_is_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = SimulatorConfig(api_key="top-secret-key", connector_uuid="conn-1")
    async with open_simulator(config) as sim:
        for headers in (
            [("x-api-key", "wrong"), ("x-connector-uuid", "conn-1")],
            [("x-api-key", "top-secret-key"), ("x-connector-uuid", "other")],
            [],
        ):
            with pytest.raises(WSSAuthenticationError, match="401") as info:
                async with open_control(sim, headers=headers):
                    pass
            assert "API key" in str(info.value)
        async with open_control(sim) as control:
            call = await sim.place_call()
            call_in = await control.claim()
            async with open_media(sim, call_in):
                await call.hang_up()
        assert sim.statistics().auth_rejections == 3
    assert "top-secret-key" not in caplog.text
    assert call_in.token not in caplog.text
    assert "top-secret-key" not in repr(config)


async def test_media_tokens_are_single_use_and_expire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator(SimulatorConfig(token_ttl=5)) as sim, open_control(sim) as control:
        call = await sim.place_call()
        call_in = await control.claim()
        forged = CallIn(
            call_in.session_id, call_in.call_id, "", "", call_in.url, call_in.token + "x"
        )
        with pytest.raises(WSSAuthenticationError, match="401"):
            async with open_media(sim, forged):
                pass
        other_call = CallIn(call_in.session_id, "other", "", "", call_in.url + "-x", call_in.token)
        with pytest.raises(WSSAuthenticationError, match="401"):
            async with open_media(sim, other_call):
                pass
        async with open_media(sim, call_in):
            with pytest.raises(WSSAuthenticationError, match="already used"):
                async with open_media(sim, call_in):
                    pass
            await call.hang_up()
        await control.expect(SessionClosed)
        with pytest.raises(WSSAuthenticationError):
            async with open_media(sim, call_in):
                pass

        late = await sim.place_call()
        late_in = await control.claim()
        await trio.sleep(5.5)
        with pytest.raises(WSSAuthenticationError, match="expired"):
            async with open_media(sim, late_in):
                pass
        await late.hang_up()


def _tls_files(tmp_path: Path, ca: trustme.CA) -> dict[str, Path]:
    server = ca.issue_cert("simulator.invalid", "127.0.0.1")
    files = {
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
        "ca": tmp_path / "ca.pem",
    }
    server.cert_chain_pems[0].write_to_path(files["cert"])
    server.private_key_pem.write_to_path(files["key"])
    ca.cert_pem.write_to_path(files["ca"])
    return files


def _mtls_config(tmp_path: Path) -> tuple[SimulatorConfig, ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    files = _tls_files(tmp_path, ca)
    config = SimulatorConfig(
        tls_cert=files["cert"], tls_key=files["key"], tls_client_ca=files["ca"]
    )
    with_cert = ssl.create_default_context()
    ca.configure_trust(with_cert)
    ca.issue_cert("agent@example.com").configure_cert(with_cert)
    without_cert = ssl.create_default_context()
    ca.configure_trust(without_cert)
    return config, with_cert, without_cert


async def test_mtls_in_memory(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    config, with_cert, without_cert = _mtls_config(tmp_path)
    async with open_simulator(config) as sim:
        assert sim.base_url == "wss://simulator.invalid"
        async with open_control(sim, headers=[], ssl_context=with_cert) as control:
            call = await sim.place_call()
            call_in = await control.claim()
            assert call_in.url.startswith("wss://")
            async with open_media(sim, call_in, ssl_context=with_cert) as media:
                assert (await media.command("call.answer")).success
                await call.hang_up()
        with pytest.raises(WSSError):
            async with open_control(sim, headers=[], ssl_context=without_cert, connect_timeout=3):
                pass
        assert sim.statistics().handler_errors == 0


async def test_mtls_over_loopback(tmp_path: Path) -> None:
    config, with_cert, _ = _mtls_config(tmp_path)
    async with open_simulator(config, listen=True) as sim:
        assert sim.base_url == f"wss://127.0.0.1:{sim.port}"
        async with open_websocket(
            sim.base_url + CONTROL_PATH, ssl_context=with_cert, connect_timeout=5
        ) as ws:
            await ws.send_message(Setup(24000, "mixed").encode())
            assert "setup.done" in str(await ws.get_message())


# -- bad clients -------------------------------------------------------------------------------


async def test_bad_setup(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator(SimulatorConfig(sample_rate=8000, setup_timeout=4)) as sim:
        for first, reason in (
            (Setup(16000, "mixed").encode(), "unsupported sampleRate 16000 (use 8000)"),
            (Setup(8000, "stereo").encode(), "unsupported audioMode 'stereo'"),
            ('{"type":"session.ready","sessionId":"s"}', "the first frame must be setup"),
            ("{oops", "bad setup frame"),
        ):
            async with open_control(sim, setup=False) as control:
                await control.ws.send_message(first)
                with pytest.raises(WSSConnectionClosed) as info:
                    await control.recv()
                assert info.value.code == 1008
                assert (info.value.reason or "").startswith(reason)
        async with open_control(sim, setup=False) as control:
            t0 = trio.current_time()
            with pytest.raises(WSSConnectionClosed) as info:
                await control.recv()
            assert (info.value.code, trio.current_time() - t0) == (1008, 4)
        async with open_control(sim, sample_rate=8000) as control:
            assert control.sm_ws_id
        stats = sim.statistics()
        assert (stats.malformed_frames, stats.handler_errors) == (1, 0)


async def test_malformed_control_frames(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim:
        async with open_control(sim) as control:
            await control.ws.send_message('{"type":"session.open","reqId":"r1"}')
            response: Response = await control.expect(Response)
            assert (response.req_id, response.ok, response.error_code) == (
                "r1",
                False,
                "INVALID_REQUEST",
            )
            assert "sessionId" in response.error_content["message"]
            await control.ws.send_message('{"type":"mystery","reqId":"r2"}')
            assert (await control.expect(Response)).error_code == "INVALID_REQUEST"
            await control.ws.send_message('{"type":"mystery"}')  # ignored
            await control.ws.send_message('{"type":"setup.done","smWsId":"x"}')  # ignored
            await control.ws.send_message("[1, 2")
            with pytest.raises(WSSConnectionClosed) as info:
                await control.recv()
            assert info.value.code == 1008
        async with open_control(sim) as control:
            await control.ws.send_message(b"\x00\x01")
            with pytest.raises(WSSConnectionClosed) as info:
                await control.recv()
            assert info.value.code == 1003
        async with open_control(sim) as control:  # the server carries on
            call = await sim.place_call()
            assert (await control.expect(SessionNotify)).session_id == call.session_id
        stats = sim.statistics()
        assert (stats.malformed_frames, stats.handler_errors) == (3, 0)


async def test_malformed_media_frames(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call()
        async with open_media(sim, await control.claim()) as media:
            await media.ws.send_message('{"type":"command","data":{"command_id":"c1"}}')
            await media.wait_for(lambda: "c1" in media.responses)
            assert media.responses["c1"].error_code == "INVALID_COMMAND"
            await media.ws.send_message(b"\x00")  # no samples: ignored
            await media.ws.send_message(BufferRequest(640).encode())  # the wrong way: ignored
            assert (await media.command("call.answer")).success
            await media.ws.send_message("garbage")
            closed = await media.wait_closed()
            assert closed.code == 1008
    result = await call.wait_result()
    assert result.ended_by == "media_lost"
    assert sim.statistics().malformed_frames == 3
    assert sim.statistics().handler_errors == 0


@pytest.mark.parametrize("transport", ["lean", "trio-websocket"])
async def test_silent_and_wrong_path_clients(
    transport: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_simulator(SimulatorConfig(connect_timeout=3, transport=transport)) as sim:
        stream = await sim.open_stream("x", 80, None)
        await stream.send_all(b"GET /v1/agent/session-manager HTTP/1.1\r\n")  # never finished
        t0 = trio.current_time()
        assert await stream.receive_some() == b""
        assert trio.current_time() - t0 == 3
        garbage = await sim.open_stream("x", 80, None)
        await garbage.send_all(b"\x16\x03\x01 not http at all\r\n\r\n")
        with trio.fail_after(5):
            while await garbage.receive_some():
                pass
        with pytest.raises(WSSConnectionError, match="404"):
            async with open_websocket(sim.base_url + "/elsewhere", open_stream=sim.open_stream):
                pass
        async with open_control(sim) as control:
            assert control.sm_ws_id
        assert sim.statistics().handler_errors == 0


async def test_replay_stream_replays_what_it_kept_and_is_bounded() -> None:
    """The stream that lets the trio-websocket transport read a request head first."""
    with trio.fail_after(5):
        client, server = trio.testing.memory_stream_pair()
        replay = ReplayStream(server, limit=8)
        await client.send_all(b"GET /x")
        assert await replay.receive_some() == b"GET /x"
        replay.replay()
        await client.send_all(b" HTTP/1.1")
        assert await replay.receive_some(4) == b"GET "  # the kept bytes first, in pieces
        assert await replay.receive_some() == b"/x"
        assert await replay.receive_some() == b" HTTP/1.1"  # then the stream, not kept
        await replay.send_all(b"ok")
        assert await client.receive_some() == b"ok"
        await replay.aclose()
        assert await client.receive_some() == b""
        client, server = trio.testing.memory_stream_pair()
        too_much = ReplayStream(server, limit=8)
        await client.send_all(b"123456789")
        with pytest.raises(trio.BrokenResourceError, match="too large"):
            await too_much.receive_some()


async def test_connection_limit(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator(SimulatorConfig(max_connections=1)) as sim:
        async with open_control(sim):
            with pytest.raises(WSSConnectionError):
                async with open_control(sim):
                    pass
            assert sim.statistics().connections == 1
        await trio.testing.wait_all_tasks_blocked()  # the simulator's side of the close
        async with open_control(sim) as control:
            assert control.sm_ws_id


# -- lifecycle --------------------------------------------------------------------------------


async def test_user_exception_passes_through_unchanged() -> None:
    with pytest.raises(KeyError, match="mine"):
        async with open_simulator():
            raise KeyError("mine")


async def test_leaving_the_block_shuts_down_gracefully(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: dict[str, Any] = {}

    async def agent(sim: Any, answered: trio.Event) -> None:
        async with open_control(sim) as control:
            async with open_media(sim, await control.claim()) as media:
                assert (await media.command("call.answer")).success
                answered.set()
                seen["terminated"] = await media.wait_event("call.terminated")
                seen["media_closed"] = await media.wait_closed()
            seen["session_closed"] = await control.expect(SessionClosed)
            with pytest.raises(WSSConnectionClosed) as info:
                await control.recv()
            seen["control_closed"] = info.value

    async with trio.open_nursery() as nursery:
        async with open_simulator() as sim:
            call = await sim.place_call()
            answered = trio.Event()
            nursery.start_soon(agent, sim, answered)
            await answered.wait()
        assert trio.current_time() < 1
    assert seen["terminated"].fields["reason"] == "FORCE_CLOSE"
    assert seen["media_closed"].code == 1000
    assert seen["session_closed"] == SessionClosed(call.session_id, "FORCE_CLOSE")
    assert seen["control_closed"].code == 1001
    assert (await call.wait_result()).ended_by == "server"
    with pytest.raises(OSError):
        await sim.open_stream("x", 80, None)
    with pytest.raises(RuntimeError):
        await sim.place_call()


async def test_cancelling_stops_everything_at_once(autojump_clock: trio.testing.MockClock) -> None:
    seen: dict[str, Any] = {}
    scope = trio.CancelScope()

    async def simulator(task_status: trio.TaskStatus[Any]) -> None:
        with scope:
            await serve_simulator(listen=False, task_status=task_status)

    async def agent(sim: Any, answered: trio.Event) -> None:
        async with open_control(sim) as control:
            async with open_media(sim, await control.claim()) as media:
                assert (await media.command("call.answer")).success
                answered.set()
                seen["media_closed"] = await media.wait_closed()
            with pytest.raises(WSSConnectionClosed):
                await control.recv()

    async with trio.open_nursery() as nursery:
        sim = await nursery.start(simulator)
        call = await sim.place_call()
        answered = trio.Event()
        nursery.start_soon(agent, sim, answered)
        await answered.wait()
        t0 = trio.current_time()
        scope.cancel()
    assert trio.current_time() - t0 <= 2 * sim.config.close_timeout
    assert "media_closed" in seen
    assert (await call.wait_result()).ended_by == "server"
    assert sim.statistics().connections == 0


async def test_loopback_call() -> None:
    async with trio.open_nursery() as nursery:
        sim = await nursery.start(serve_simulator)
        assert sim.base_url == f"ws://127.0.0.1:{sim.port}"
        async with open_control(sim, open_stream=None) as control:
            call = await sim.place_call(CallerScript(tone(440)))
            call_in = await control.claim()
            assert call_in.url == f"{sim.base_url}/v1/media/{call.call_id}"
            async with open_media(sim, call_in, open_stream=None) as media:
                assert (await media.command("call.answer")).success
                await media.wait_for(lambda: media.audio.get(0))
                await call.hang_up()
                assert (await media.wait_closed()).code == 1000
        nursery.cancel_scope.cancel()
    assert (await call.wait_result()).ended_by == "caller_hangup"


async def test_loopback_rejects_bad_key() -> None:
    async with open_simulator(listen=True) as sim:
        with pytest.raises(WSSAuthenticationError, match="401"):
            async with open_control(sim, open_stream=None, headers=[("x-api-key", "nope")]):
                pass


# -- tools ------------------------------------------------------------------------------------


async def test_softphone(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    prompt = tone(500).frames(8000, 8000).__next__()  # 0.5 s at 8 kHz
    write_wav(tmp_path / "in.wav", prompt, 8000)
    events: list[dict[str, Any]] = []

    async def agent(sim: Any) -> None:
        async with open_control(sim, sample_rate=16000) as control:
            call_in = await control.claim()
            async with open_media(sim, call_in) as media:
                assert (await media.command("call.answer")).success
                await trio.sleep(0.5)
                await media.say(bytes(media.audio[0]))  # echo what the caller said
                await media.wait_closed()

    async with open_simulator() as sim, trio.open_nursery() as nursery:
        nursery.start_soon(agent, sim)
        await trio.sleep(0.1)
        call = await run_softphone(
            sim.base_url,
            wav=tmp_path / "in.wav",
            record=tmp_path / "out.wav",
            hangup_after=1.5,
            open_stream=sim.open_stream,
            on_event=events.append,
        )
    assert call.result["endedBy"] == "caller_hangup"
    assert call.result["callerAudioSeconds"] == pytest.approx(1.5)
    assert call.result["agentAudioSeconds"] == pytest.approx(0.5, abs=0.03)
    assert call.sample_rate == 16000
    assert len(call.agent_audio) == pytest.approx(16000, abs=1000)  # 0.5 s played out
    assert (tmp_path / "out.wav").exists()
    kinds = [e["type"] for e in events]
    assert kinds[0] == "call.placed"
    assert kinds[-1] == "call.result"
    assert [e["data"]["state"] for e in events if e["type"] == "call.state"] == [
        "ANSWERED",
        "DISCONNECTED",
    ]


async def test_softphone_hang_up_by_disconnecting(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim:
        with trio.move_on_after(2):
            await run_softphone(sim.base_url, open_stream=sim.open_stream)
        await trio.sleep(0.1)
        (result,) = sim.results()
        assert (result.ended_by, result.final_state) == ("caller_hangup", CallState.DISCONNECTED)


async def test_frame_log(autojump_clock: trio.testing.MockClock) -> None:
    out = io.StringIO()
    async with (
        open_simulator(frame_log=JsonLinesFrameLog(out)) as sim,
        open_control(sim) as control,
    ):
        call = await sim.place_call(CallerScript(hangup_after=0.11))
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.answer")).success
            await media.wait_closed()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    control_name = f"control-{control.sm_ws_id}"
    media_name = f"media-{call.call_id}"
    # The upgrade requests (control, media) are in too: see the test below.
    assert [r["conn"] for r in records if r["dir"] == "request"] == ["http-1", "http-2"]
    records = [r for r in records if r["dir"] != "request"]
    assert records[0] == {
        "t": 0.0,
        "conn": "control-1",  # named by its connection number until setup is done
        "dir": "in",
        "text": Setup(16000, "mixed").encode(),
    }
    texts = [(r["conn"], r["dir"], json.loads(r["text"])["type"]) for r in records if "text" in r]
    assert (control_name, "out", "setup.done") in texts
    assert (control_name, "in", "session.open") in texts
    assert (media_name, "in", "command") in texts
    assert (media_name, "out", "command_response") in texts
    (call_in,) = [r["text"] for r in records if '"call.in"' in r.get("text", "")]
    assert json.loads(call_in)["token"] == "***"
    audio = [r for r in records if r.get("bytes") and r["conn"] == media_name]
    assert len(audio) == 6  # 0 to 0.1 s
    assert all(r["channel"] == 0 and r["bytes"] == 640 for r in audio)


async def test_frame_log_records_every_request_with_credentials_masked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    records: list[tuple[str, str, str | bytes]] = []
    async with (
        open_simulator(frame_log=lambda *record: records.append(record)) as sim,
        open_control(sim) as control,
    ):
        await sim.place_call(CallerScript(hangup_after=0.05))
        call_in = await control.claim()
        async with open_media(sim, call_in) as media:
            assert (await media.command("call.answer")).success
            await media.wait_closed()
        rest = await sim.open_stream("simulator", 80, None)
        await rest.send_all(
            b"GET /public/v1/sessions?channel=WA HTTP/1.1\r\nhost: simulator\r\n"
            b"x-api-key: " + sim.api_key.encode() + b"\r\nContent-Length: 0\r\n\r\n"
        )
        while await rest.receive_some():
            pass
    requests = [(name, json.loads(text)) for name, way, text in records if way == "request"]
    assert [(name, r["method"], r["path"]) for name, r in requests] == [
        ("http-1", "GET", CONTROL_PATH),
        ("http-2", "GET", call_in.url.removeprefix(sim.base_url)),
        ("http-3", "GET", "/public/v1/sessions?channel=WA"),
    ]
    control_headers = dict(requests[0][1]["headers"])
    assert control_headers["x-api-key"] == "***"
    assert control_headers["x-connector-uuid"] == sim.connector_uuid
    assert dict(requests[1][1]["headers"])["authorization"] == "***"
    assert [name for name, _ in requests[2][1]["headers"]] == [
        "host",
        "x-api-key",
        "content-length",
    ]
    assert sim.api_key not in repr(records)
    assert call_in.token not in repr(records[:4])  # the requests and the setup


async def test_unknown_frames_from_the_platform_reach_the_client_as_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The simulator's raw-frame fault is how client tests exercise forward compatibility.
    async with open_simulator() as sim, open_control(sim) as control:
        await sim.faults.send_control('{"type":"call.notify","v":2}')
        frame = await control.expect(UnknownFrame)
        assert frame.type == "call.notify"


async def test_softphone_hangs_up_after_its_prompt(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    write_wav(tmp_path / "in.wav", bytes(16000), 8000)  # 1 s

    async def agent(sim: Any) -> None:
        async with open_control(sim) as control:
            call_in = await control.claim()
            async with open_media(sim, call_in) as media:
                assert (await media.command("call.answer")).success
                await media.wait_closed()

    async with open_simulator() as sim, trio.open_nursery() as nursery:
        nursery.start_soon(agent, sim)
        call = await run_softphone(
            sim.base_url, wav=tmp_path / "in.wav", open_stream=sim.open_stream
        )
    assert call.result["endedBy"] == "caller_hangup"
    assert call.result["duration"] == pytest.approx(1.0 + 2.0)
