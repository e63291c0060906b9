"""WebSockets (RFC 6455) on trio: the library's own fast transport.

Layout (the public API is built on these):

* ``_framing``: RFC 6455 framing, sans-IO (headers, masking, close payloads,
  reassembly, UTF-8); tested without trio.
* ``_handshake``: the HTTP upgrade over h11, sans-IO (request, 101, rejection).
* ``_connection``: the I/O connection (``LeanWebSocket``) over a trio stream,
  with the plain-TCP fast path, and the upgrade I/O of both sides.
* ``_poller``: one epoll set per trio run, deferred small writes.
* ``_streams``: where the byte stream is made (TCP, TLS client and server side).
* ``_transport``: the seam the rest of the library talks to (``MessageStream``,
  ``open_websocket`` on the lean transport or trio-websocket, exception mapping).
"""
