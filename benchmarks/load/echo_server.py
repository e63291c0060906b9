"""The remote every bridge talks to: a picows (Cython) WebSocket echo on uvloop.

It mirrors every data frame (same opcode and fin bit) and answers ping and close,
so it costs almost nothing next to the bridge under test.

Usage: ``python echo_server.py --port PORT``
"""

from __future__ import annotations

import argparse

import uvloop
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server


class Echo(WSListener):  # type: ignore[misc]
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY or kind is WSMsgType.CONTINUATION:
            transport.send(kind, frame.get_payload_as_memoryview(), frame.fin)
        elif kind is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind is WSMsgType.CLOSE:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()


async def main(port: int) -> None:
    server = await ws_create_server(lambda request: Echo(), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))
