"""Operating a worker: Prometheus metrics and health endpoints over HTTP.

:func:`serve_metrics` runs a small HTTP/1.1 server on trio (h11) next to a
:class:`~telcoflow_trio.TelcoflowClient`::

    async with TelcoflowClient(config) as client, trio.open_nursery() as nursery:
        port = await nursery.start(serve_metrics, client, "127.0.0.1", 9100)
        ...

It answers ``GET`` (and ``HEAD``) on three paths:

* ``/metrics``: the client's statistics in the Prometheus text format
  (``telcoflow_client_*``; see :class:`ClientCollector`);
* ``/ready``: 200 while the client is connected and claiming calls, else 503
  (for a load balancer or an orchestrator's readiness probe);
* ``/healthz``: 200 whenever the server answers (liveness: a wedged event loop
  cannot answer).

Each connection carries one request and is closed after the response. A
request is at most 8 KiB of head and must arrive within 10 s; at most 64
connections are served at once (more are closed at once). A malformed request
is answered 400; whatever goes wrong with one connection is logged and ends
only that connection.

``/metrics`` needs the optional ``prometheus-client`` package
(``pip install 'telcoflow-trio[metrics]'``). To export through your own
Prometheus registry or web framework instead, register a
:class:`ClientCollector`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Final, NoReturn

import h11
import trio

from ._client import TelcoflowClient

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["ClientCollector", "serve_metrics"]

logger = logging.getLogger(__name__)

#: Largest request head accepted, in bytes.
MAX_REQUEST_BYTES: Final = 8192
#: Bound on one connection: the request arriving and the response being sent.
REQUEST_TIMEOUT: Final = 10.0
#: After a response: how long, and how many bytes, to read and discard before closing.
LINGER: Final = 1.0
MAX_DRAIN_BYTES: Final = 1 << 16
#: Connections served at once; more are closed unanswered.
MAX_CONNECTIONS: Final = 64
#: Prefix of every metric name.
PREFIX: Final = "telcoflow_client"

_TEXT: Final = "text/plain; charset=utf-8"


#: ``(metric name, help, ClientStatistics field)`` of the gauges, then of the counters.
_GAUGES: Final = (
    ("connected", "1 while the control connection is set up.", "connected"),
    ("claiming", "1 while the client takes new calls.", "claiming"),
    ("calls_active", "Calls in progress.", "calls_active"),
    ("claims_in_flight", "Sessions being claimed.", "claims_in_flight"),
    ("send_buffer_bytes", "Agent audio queued to send.", "send_buffer_bytes"),
    ("loop_lag_seconds", "How late the event loop runs.", "loop_lag"),
)
_COUNTERS: Final = (
    ("calls_received", "Calls received (call.in).", "calls_total"),
    ("calls_failed", "Calls whose media could not be opened.", "calls_failed"),
    ("calls_outbound", "Outbound calls placed (session.create accepted).", "calls_outbound"),
    (
        "calls_outbound_unanswered",
        "Outbound calls that ended before the answer.",
        "calls_outbound_unanswered",
    ),
    ("sessions_notified", "Calls offered (session.notify).", "notifications"),
    ("sessions_claimed", "Claims won.", "sessions_claimed"),
    ("sessions_busy", "Claims lost to another worker.", "sessions_busy"),
    ("sessions_full", "Offers declined at max_calls.", "sessions_full"),
    ("control_connects", "Control connections set up.", "connects"),
    ("control_reconnects", "Control reconnections.", "reconnects"),
    ("handler_errors", "Exceptions raised by handlers.", "handler_errors"),
    ("malformed_frames", "Malformed control frames.", "malformed_frames"),
    ("audio_frames_sent", "Agent audio frames sent.", "audio_frames_sent"),
    ("audio_bytes_sent", "Agent audio bytes sent.", "audio_bytes_sent"),
    ("audio_frames_received", "Caller audio frames received.", "audio_frames_received"),
    ("audio_bytes_received", "Caller audio bytes received.", "audio_bytes_received"),
)


def _prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "telcoflow_trio.metrics needs the prometheus-client package: "
            "install the 'metrics' extra (pip install 'telcoflow-trio[metrics]')"
        ) from exc


class ClientCollector:
    """A Prometheus collector of one client's :meth:`~telcoflow_trio.TelcoflowClient.statistics`.

    Register it with any ``prometheus_client`` registry, e.g.
    ``prometheus_client.REGISTRY.register(ClientCollector(client))``. Each
    scrape takes a fresh snapshot.

    Raises:
        ImportError: ``prometheus-client`` is not installed (the ``metrics`` extra).
    """

    def __init__(self, client: TelcoflowClient, *, prefix: str = PREFIX) -> None:
        _prometheus()
        self._client = client
        self._prefix = prefix

    def collect(self) -> Iterator[Metric]:
        """The metric families of a fresh statistics snapshot (called by the registry)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        s = self._client.statistics()
        p = self._prefix

        for name, doc, field in _GAUGES:
            yield GaugeMetricFamily(f"{p}_{name}", doc, value=getattr(s, field))
        for name, doc, field in _COUNTERS:
            yield CounterMetricFamily(f"{p}_{name}", doc, value=getattr(s, field))
        ended = CounterMetricFamily(
            f"{p}_calls_ended", "Calls ended, by reason.", labels=["reason"]
        )
        for reason, n in sorted(s.calls_ended.items()):
            ended.add_metric([reason], n)
        yield ended
        latency = s.claim_latency
        yield HistogramMetricFamily(
            f"{p}_claim_latency_seconds",
            "From session.notify to call.in, of won claims.",
            buckets=[(_bound(b), n) for b, n in latency.cumulative()],
            sum_value=latency.sum,
        )


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


async def serve_metrics(
    client: TelcoflowClient,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve ``/metrics``, ``/ready`` and ``/healthz`` for ``client`` until cancelled.

    Use it with ``nursery.start``, which returns the bound port (the one
    chosen when ``port`` is 0; the first listener's if ``host`` has several
    addresses).

    Raises:
        ImportError: ``prometheus-client`` is not installed (the ``metrics`` extra).
        OSError: the address cannot be bound.
    """
    collector = ClientCollector(client)  # first: it explains a missing prometheus-client
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound: int = listeners[0].socket.getsockname()[1]
    active = 0

    def respond(path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(registry)
        if path == "/ready":
            if client.statistics().claiming:  # connected, and taking calls
                return 200, _TEXT, b"ready\n"
            return 503, _TEXT, b"not ready\n"
        if path == "/healthz":
            return 200, _TEXT, b"ok\n"
        return 404, _TEXT, b"not found\n"

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal active
        if active >= MAX_CONNECTIONS:
            return  # serve_listeners closes it
        active += 1
        try:
            with trio.move_on_after(REQUEST_TIMEOUT):
                await _serve_connection(stream, respond)
        except Exception:
            logger.exception("metrics server: a connection failed")
        finally:
            active -= 1

    logger.info("metrics server listening on %s:%d", host, bound)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(bound)
        await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


async def _serve_connection(
    stream: trio.SocketStream,
    respond: Callable[[str], tuple[int, str, bytes]],
) -> None:
    """Read one request from ``stream`` and answer it (400 if malformed)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive_some(MAX_REQUEST_BYTES)
                except trio.BrokenResourceError:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                break
            else:
                return  # ConnectionClosed: the client went away
    except h11.RemoteProtocolError as exc:
        logger.debug("metrics server: bad request: %s", exc)
        await _send(stream, conn, exc.error_status_hint, _TEXT, b"bad request\n", head=False)
        return
    method, target = event.method.decode("ascii"), event.target.decode("ascii", "replace")
    path = target.split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        await _send(stream, conn, 405, _TEXT, b"method not allowed\n", head=False, allow=True)
        return
    try:
        status, content_type, body = respond(path)
    except Exception:
        logger.exception("metrics server: answering %s failed", path)
        status, content_type, body = 500, _TEXT, b"internal error\n"
    await _send(stream, conn, status, content_type, body, head=method == "HEAD")


async def _send(
    stream: trio.SocketStream,
    conn: h11.Connection,
    status: int,
    content_type: str,
    body: bytes,
    *,
    head: bool,
    allow: bool = False,
) -> None:
    headers = [
        ("content-type", content_type),
        ("content-length", str(len(body))),
        ("connection", "close"),
    ]
    if allow:
        headers.append(("allow", "GET, HEAD"))
    reason = HTTPStatus(status).phrase.encode()
    events: list[h11.Event] = [h11.Response(status_code=status, headers=headers, reason=reason)]
    if not head:
        events.append(h11.Data(data=body))
    events.append(h11.EndOfMessage())
    with contextlib.suppress(trio.BrokenResourceError):  # the client went away
        await stream.send_all(b"".join(conn.send(event) or b"" for event in events))
        # Close gently: closing with unread request bytes would reset the
        # connection and could destroy the response before the client reads it.
        await stream.send_eof()
        with trio.move_on_after(LINGER):
            drained = 0
            while drained < MAX_DRAIN_BYTES:
                data = await stream.receive_some(MAX_REQUEST_BYTES)
                if not data:
                    break
                drained += len(data)
