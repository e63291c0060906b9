"""Client configuration: :class:`TelcoflowClientConfig` and its two factories.

The factories keep the SDK 0.24 signatures (``sandbox(api_key, connector_uuid,
sample_rate)`` and ``production(cert_path, key_path, sample_rate)``); every other
setting is a keyword option with the 1.0.0 wire defaults. The config is frozen and
validated on creation: a bad value raises :class:`ValueError` naming the field and
what is allowed. API keys and key paths never appear in its ``repr``.
"""

from __future__ import annotations

import enum
import ssl
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from .proto._backoff import BackoffPolicy
from .proto._claim import ClaimMode, ClaimPolicy
from .ws._transport import DEFAULT_TRANSPORT, TRANSPORTS, Transport

__all__ = [
    "PRODUCTION_URL",
    "AudioMode",
    "AuthMode",
    "ClaimMode",
    "ClaimPolicy",
    "TelcoflowClientConfig",
]

#: The platform endpoint the 1.0.0 SDK connects to by default.
PRODUCTION_URL: Final = "wss://wss-prod.agentao.com"
SAMPLE_RATES: Final = (8000, 16000, 24000)


class AuthMode(enum.StrEnum):
    """How the client proves who it is."""

    #: ``x-api-key`` and ``x-connector-uuid`` headers (SDK 0.24 "SANDBOX").
    SANDBOX = "sandbox"
    #: A client certificate (mTLS) (SDK 0.24 "PROD").
    PRODUCTION = "production"


class AudioMode(enum.StrEnum):
    """How call audio is delivered: all legs mixed on channel 0, or one channel per leg."""

    MIXED = "mixed"
    ISOLATED = "isolated"


def _redact(value: object) -> str:
    return "None" if value is None else "'***'"


def _one_of(*allowed: object) -> Any:
    def check(_: object, attribute: attrs.Attribute[object], value: object) -> None:
        if value not in allowed:
            choices = ", ".join(map(str, allowed))
            raise ValueError(f"{attribute.name} must be one of {choices}; got {value!r}")

    return check


def _positive(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive number; got {value!r}")


def _power_of_two(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value & (value - 1):
        raise ValueError(f"{attribute.name} must be a positive power of two; got {value!r}")


def _optional_positive_int(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ValueError(f"{attribute.name} must be a positive integer or None; got {value!r}")


def _claim_policy(value: ClaimPolicy | ClaimMode | str) -> ClaimPolicy:
    return ClaimPolicy(mode=value) if isinstance(value, str) else value


def _ws_url(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{attribute.name} must be a ws:// or wss:// URL; got {value!r}")


def _non_empty(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{attribute.name} must be a non-empty string")


@attrs.frozen(kw_only=True)
class TelcoflowClientConfig:
    """Everything :class:`~telcoflow_trio.TelcoflowClient` needs to know.

    Build it with :meth:`sandbox` or :meth:`production`. Times are in seconds.
    """

    auth_mode: AuthMode = attrs.field(converter=AuthMode)
    api_key: str | None = attrs.field(default=None, repr=_redact, validator=_non_empty)
    connector_uuid: str | None = attrs.field(default=None, validator=_non_empty)
    cert_path: str | None = attrs.field(default=None, repr=_redact, validator=_non_empty)
    key_path: str | None = attrs.field(default=None, repr=_redact, validator=_non_empty)
    #: CA bundle to verify the server with (mTLS); ``None`` uses the system store.
    ca_file: str | None = attrs.field(default=None, validator=_non_empty)
    #: Platform base URL; the control connection is ``{base_url}/v1/agent/session-manager``.
    base_url: str = attrs.field(default=PRODUCTION_URL, validator=_ws_url)
    sample_rate: int = attrs.field(default=24000, validator=_one_of(*SAMPLE_RATES))
    audio_mode: AudioMode = attrs.field(default=AudioMode.MIXED, converter=AudioMode)
    #: Capacity of each call's outgoing audio buffer, in bytes (power of two).
    buffer_size: int = attrs.field(default=1 << 20, validator=_power_of_two)
    #: Cap on accumulated ``buffer_request`` credit, in milliseconds of audio.
    max_send_credit_ms: int = attrs.field(default=200, validator=_positive)
    #: Caller audio chunks kept for ``audio_stream()`` before the oldest is dropped.
    inbound_queue_chunks: int = attrs.field(default=500, validator=_positive)
    heartbeat_interval: float = attrs.field(default=30.0, validator=_positive)
    heartbeat_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Bound on opening a connection: TCP, TLS and the WebSocket handshake together.
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    setup_timeout: float = attrs.field(default=10.0, validator=_positive)
    request_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: Deadline sent to the server with each command (``connect`` uses its ring time).
    command_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: How much longer than the server's deadline the client waits for a response.
    command_grace: float = attrs.field(default=5.0, validator=_positive)
    #: Bound on every WebSocket close handshake.
    close_timeout: float = attrs.field(default=2.0, validator=_positive)
    reconnect: BackoffPolicy = attrs.field(factory=BackoffPolicy)
    #: Most calls this worker handles at once: at this many active calls (and
    #: claims in flight) it claims no more, leaving calls to other workers.
    #: ``None``: no limit.
    max_calls: int | None = attrs.field(default=None, validator=_optional_positive_int)
    #: How this worker races the others for calls (default: load-aware); a
    #: mode name (``"first_come"``) stands for that mode's default policy.
    claim_policy: ClaimPolicy = attrs.field(
        factory=ClaimPolicy,
        converter=_claim_policy,
        validator=attrs.validators.instance_of(ClaimPolicy),
    )
    #: The ``x-sdk-version`` header. Servers gate on it; the default is the
    #: protocol version this library speaks.
    sdk_version: str = attrs.field(default="1.0.0", validator=_non_empty)
    max_message_size: int = attrs.field(default=1 << 20, validator=_positive)
    #: The WebSocket implementation: ``"lean"`` (the default; about half the
    #: CPU per message of the other, see the performance page of the docs) or
    #: ``"trio-websocket"``.
    transport: Transport = attrs.field(
        default=DEFAULT_TRANSPORT, validator=attrs.validators.in_(TRANSPORTS)
    )

    def __attrs_post_init__(self) -> None:
        if self.auth_mode is AuthMode.SANDBOX:
            if not (self.api_key and self.connector_uuid):
                raise ValueError("sandbox mode needs both api_key and connector_uuid")
            if self.cert_path or self.key_path:
                raise ValueError("sandbox mode takes no cert_path/key_path (use production)")
        else:
            if not (self.cert_path and self.key_path):
                raise ValueError("production mode needs both cert_path and key_path")
            if self.api_key:
                raise ValueError("production mode takes no api_key (use sandbox)")

    @classmethod
    def sandbox(
        cls, api_key: str, connector_uuid: str, sample_rate: int = 24000, **options: Any
    ) -> TelcoflowClientConfig:
        """API-key authentication (SDK 0.24 "SANDBOX" mode).

        ``options`` are any other fields, e.g. ``base_url="ws://127.0.0.1:8080"``.
        """
        return cls(
            auth_mode=AuthMode.SANDBOX,
            api_key=api_key,
            connector_uuid=connector_uuid,
            sample_rate=sample_rate,
            **options,
        )

    @classmethod
    def production(
        cls, cert_path: str, key_path: str, sample_rate: int = 24000, **options: Any
    ) -> TelcoflowClientConfig:
        """mTLS authentication with a client certificate (SDK 0.24 "PROD" mode)."""
        return cls(
            auth_mode=AuthMode.PRODUCTION,
            cert_path=cert_path,
            key_path=key_path,
            sample_rate=sample_rate,
            **options,
        )

    @property
    def control_url(self) -> str:
        """The control (session-manager) WebSocket URL."""
        return self.base_url.rstrip("/") + "/v1/agent/session-manager"

    def auth_headers(self) -> list[tuple[str, str]]:
        """Headers for the control connection. Contains secrets: never log it."""
        headers = [("x-sdk-version", self.sdk_version)]
        if self.api_key and self.connector_uuid:
            headers += [("x-api-key", self.api_key), ("x-connector-uuid", self.connector_uuid)]
        return headers

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS settings for ``wss://`` URLs; verification is always on.

        Raises:
            OSError, ssl.SSLError: a certificate, key or CA file cannot be loaded.
        """
        if urlsplit(self.base_url).scheme != "wss" and self.auth_mode is AuthMode.SANDBOX:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        if self.cert_path and self.key_path:
            context.load_cert_chain(self.cert_path, self.key_path)
        return context
