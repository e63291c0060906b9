"""The remote every bridge talks to: a picows (Cython) WebSocket echo on uvloop.

It mirrors every data frame (same opcode and fin bit) and answers ping and close,
so it costs almost nothing next to the bridge under test. With ``--tls-port``
the same process also serves ``wss://`` there (uvloop's TLS), so every bridge,
on ``ws://`` or ``wss://``, talks to the same echo.

Usage: ``python echo_server.py --port PORT [--tls-port PORT --certfile PEM --keyfile PEM]``
"""

from __future__ import annotations

import argparse
import ssl

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


async def main(args: argparse.Namespace) -> None:
    if args.tls_port:  # listening before the plain port is, so a runner waits for that one
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.certfile, args.keyfile)
        await ws_create_server(lambda request: Echo(), "127.0.0.1", args.tls_port, ssl=context)
    server = await ws_create_server(lambda request: Echo(), "127.0.0.1", args.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-port", type=int, help="also serve wss:// on this port")
    parser.add_argument("--certfile", help="server certificate chain (PEM), for --tls-port")
    parser.add_argument("--keyfile", help="its private key (PEM)")
    args = parser.parse_args()
    if args.tls_port and not (args.certfile and args.keyfile):
        parser.error("--tls-port needs --certfile and --keyfile")
    uvloop.run(main(args))
