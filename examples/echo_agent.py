"""Echo agent: answer every call and play the caller back to themselves.

Run ``telcoflow-trio simulate`` in one terminal, this file in another, and
``telcoflow-trio call --server ws://127.0.0.1:8080 --wav hello.wav --record echo.wav``
in a third.
"""

from telcoflow_trio import ActiveCall


async def on_call(call: ActiveCall) -> None:
    await call.answer()
    async for chunk in call.audio_stream():
        call.send_audio(chunk)
    # The caller hung up: audio_stream() ended and the call is over.


if __name__ == "__main__":
    from _run import run_agent

    run_agent(on_call)
