"""Every program in examples/ runs against the simulator and does what it says."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import pathlib
import queue
import sys
from collections.abc import Callable, Iterator
from functools import partial
from types import ModuleType
from typing import Any

import hypercorn
import hypercorn.trio
import pytest
import trio

from telcoflow_trio import TelcoflowClient, TelcoflowClientConfig, events
from telcoflow_trio.simulator import SimulatorConfig, open_simulator
from telcoflow_trio.streams import bridge_call
from telcoflow_trio.testing import (
    CallerScript,
    audio_seconds,
    contains_tone,
    open_agent_test,
    open_memory_server,
    tone,
)
from telcoflow_trio.ws._transport import MessageStream

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    loaded: list[str] = []

    def load(name: str) -> ModuleType:
        loaded.append(name)
        return importlib.import_module(name)

    yield load
    for name in [*loaded, "_run", "echo_agent"]:
        sys.modules.pop(name, None)


async def test_echo_agent(example: Callable[[str], ModuleType], autojump_clock: Any) -> None:
    echo = example("echo_agent")
    async with open_agent_test(echo.on_call) as harness:
        report = await harness.place_call(CallerScript(tone(440), talk_for=2.0, hangup_after=3.0))
    report.assert_ended_by("caller_hangup")
    report.assert_no_handler_errors()
    report.assert_agent_audio(min_seconds=2.9, max_seconds=3.1, tone=440, min_share=0.5)


@pytest.mark.parametrize(
    ("answers_after", "ended_by"), [(2.0, "agent_close"), (None, "agent_disconnect")]
)
async def test_connect_and_leave(
    example: Callable[[str], ModuleType],
    autojump_clock: Any,
    answers_after: float | None,
    ended_by: str,
) -> None:
    module = example("connect_and_leave")
    async with open_agent_test(module.on_call) as harness:
        report = await harness.place_call(
            CallerScript(callee_answers_after=answers_after, hangup_after=5.0)
        )
    report.assert_ended_by(ended_by)
    report.assert_no_handler_errors()
    if answers_after is None:
        report.assert_commands("call.connect", "call.answer", "call.disconnect")
        report.assert_agent_audio(min_seconds=0.95, max_seconds=1.05, tone=330)
    else:
        report.assert_commands("call.connect", "call.close")


async def test_voicemail(example: Callable[[str], ModuleType], autojump_clock: Any) -> None:
    module = example("voicemail")
    saved: list[tuple[str, int, bytes]] = []

    async def save(call_id: str, sample_rate: int, pcm: bytes) -> None:
        saved.append((call_id, sample_rate, pcm))

    async with open_agent_test(partial(module.on_call, save=save)) as harness:
        report = await harness.place_call(CallerScript(tone(300), hangup_after=4.0))
    report.assert_ended_by("caller_hangup")
    report.assert_no_handler_errors()
    report.assert_agent_audio(min_seconds=0.45, max_seconds=0.55)  # the beep
    [(call_id, rate, pcm)] = saved
    assert call_id == report.call_id
    assert 3.0 < audio_seconds(pcm, rate) <= 4.0  # the message after the beep
    assert contains_tone(pcm, 300, rate)


@pytest.mark.parametrize(
    ("script", "reminded", "ended_by"),
    [
        (CallerScript(answers_after=3.0), True, "agent_close"),
        (CallerScript(answers_after=2.0, rejects=True), False, "callee_rejected"),
        (CallerScript(answers_after=None), False, "unanswered_timeout"),
    ],
)
async def test_outbound_reminder(
    example: Callable[[str], ModuleType],
    autojump_clock: Any,
    script: CallerScript,
    reminded: bool,
    ended_by: str,
) -> None:
    module = example("outbound_reminder")
    config = SimulatorConfig(outbound_ring_timeout=module.RING_SECONDS - 5)
    async with open_simulator(config) as sim:
        sim.expect_callee("+15550100", script)
        results: list[Any] = []
        sim.add_observer(lambda call, event: results.append(call) if event == "placed" else None)
        client_config = TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url
        )
        async with TelcoflowClient(client_config, open_stream=sim.open_stream) as client:
            assert await module.remind(client, "+15550100") is reminded
        result = await results[0].wait_result()
    assert result.ended_by == ended_by
    if reminded:
        assert 1.95 <= result.agent_audio_seconds <= 2.05
        assert contains_tone(result.agent_audio, 520, result.sample_rate)
    else:
        assert result.agent_audio_seconds == 0


async def test_bridge_to_voice_ai(
    example: Callable[[str], ModuleType], autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The remote echoes 50 frames, interrupts, then hangs up: the call ends cleanly."""
    module = example("bridge_to_voice_ai")
    frames = 0

    async def voice_ai(ws: MessageStream) -> None:
        nonlocal frames
        while frames < 50:
            await ws.send_message(await ws.get_message())
            frames += 1
        await ws.send_message(json.dumps({"type": "interrupt"}))
        await ws.send_message(json.dumps({"type": "hangup"}))
        await trio.sleep_forever()

    async with open_memory_server(voice_ai) as server:
        monkeypatch.setattr(module, "VOICE_AI_URL", server.url)
        monkeypatch.setattr(
            module, "bridge_call", partial(bridge_call, open_stream=server.open_stream)
        )
        async with open_agent_test(module.on_call) as harness:
            report = await harness.place_call(CallerScript(tone(440)))
    assert frames == 50
    report.assert_ended_by("agent_close")
    report.assert_no_handler_errors()
    report.assert_agent_audio(min_seconds=0.02)


async def test_fastapi_agent_on_hypercorn(example: Callable[[str], ModuleType]) -> None:
    """Real sockets, real clock: the lifespan-owned client takes a call, /status shows it."""
    module = example("fastapi_agent")
    with trio.fail_after(30):
        async with open_simulator(SimulatorConfig(), listen=True) as sim:
            config = TelcoflowClientConfig.sandbox(
                sim.api_key, sim.connector_uuid, base_url=sim.base_url
            )
            app = module.create_app(config)
            hconfig = hypercorn.Config()
            hconfig.bind = ["127.0.0.1:0"]
            hconfig.graceful_timeout = 1
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                urls = await nursery.start(
                    partial(hypercorn.trio.serve, app, hconfig, shutdown_trigger=stop.wait)
                )
                call = await sim.place_call(CallerScript(tone(440), hangup_after=0.5))
                result = await call.wait_result()
                status = await http_get_json(urls[0], "/status")
                stop.set()
    assert result.ended_by == "caller_hangup"
    assert status["calls_total"] == 1
    assert status["connected"] is True


async def test_handoff_between_two_processes(example: Callable[[str], ModuleType]) -> None:
    """Real sockets, real clock: this process hands two calls off through a
    multiprocessing queue to a spawned worker process, which serves them."""
    module = example("handoff")
    spawn = multiprocessing.get_context("spawn")
    documents = spawn.Queue(module.QUEUE_SIZE)
    with trio.fail_after(45):
        async with open_simulator(SimulatorConfig(), listen=True) as sim:
            config = TelcoflowClientConfig.sandbox(
                sim.api_key, sim.connector_uuid, base_url=sim.base_url
            )
            worker = spawn.Process(target=module.run_worker, args=(config, documents), daemon=True)
            worker.start()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(module.front_desk, config, documents)
                    calls = [await sim.place_call(CallerScript()) for _ in range(2)]
                    results = [await call.wait_result() for call in calls]
                    nursery.cancel_scope.cancel()
                documents.put(None)
                await trio.to_thread.run_sync(worker.join, 15)
                assert worker.exitcode == 0
            finally:
                if worker.is_alive():
                    worker.kill()
    for result in results:
        assert result.ended_by == "agent_disconnect"
        assert contains_tone(result.agent_audio, 440, result.sample_rate or 16000)  # the worker's


async def test_handoff_front_desk_serves_calls_when_the_queue_is_full(
    example: Callable[[str], ModuleType], autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = example("handoff")
    full: queue.Queue[str | None] = queue.Queue(1)
    full.put("someone else's")
    async with open_simulator(SimulatorConfig(), listen=False) as sim:
        config = TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url
        )
        opener = partial(module.TelcoflowClient, open_stream=sim.open_stream)
        monkeypatch.setattr(module, "TelcoflowClient", opener)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(module.front_desk, config, full)
            result = await (await sim.place_call(CallerScript())).wait_result()
            nursery.cancel_scope.cancel()
    assert result.ended_by == "agent_disconnect"
    assert contains_tone(result.agent_audio, 330, result.sample_rate or 16000)  # served here


async def http_get_json(base: str, path: str) -> Any:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


async def test_wa_echo_bot(example: Callable[[str], ModuleType], autojump_clock: Any) -> None:
    bot = example("wa_echo_bot")
    async with open_agent_test() as harness:
        harness.client.on(events.INCOMING_MESSAGE)(bot.on_message)
        session = await harness.send_wa_message("+15550100", "hello bot")
        await harness.send_wa_message("+15550100", {"type": "image", "image": {"id": "m1"}})
        with trio.fail_after(5):
            received = await session.wait_received(2)
        harness.faults.fail_wa_messages("REMOTE_ERROR")  # the bot survives a refused answer
        await harness.send_wa_message("+15550100", "again")
        await trio.sleep(1)
        assert harness.client.get_session(session.session_id) is not None
    assert [m.data["text"]["body"] for m in received] == [
        "You said: hello bot",
        "Sorry, I only read text messages.",
    ]
