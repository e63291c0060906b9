"""The simulator's values: its configuration, caller scripts and call results."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import attrs

from ..proto import CallState
from ..ws._transport import DEFAULT_TRANSPORT, TRANSPORTS, Transport
from ._audio import AudioSource, Silence

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_CONNECTOR_UUID",
    "CallResult",
    "CallerScript",
    "CommandRecord",
    "SimulatorConfig",
    "SimulatorStatistics",
]

#: Credentials the simulator accepts unless configured otherwise (local use only).
DEFAULT_API_KEY = "sim-api-key"
DEFAULT_CONNECTOR_UUID = "sim-connector"

_SAMPLE_RATES = (8000, 16000, 24000)


def _redact(value: object) -> str:
    return "None" if value is None else "'***'"


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{attribute.name} must be a non-negative number or None; got {value!r}")


def _positive(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive number; got {value!r}")


def _audio_source(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, AudioSource):
        raise TypeError(
            f"{attribute.name} must be an audio source (tone(), silence(), noise(), "
            f"wav_source()); got {type(value).__name__}"
        )


@attrs.frozen(kw_only=True)
class SimulatorConfig:
    """How the simulator behaves. Times are in seconds.

    Authentication: without TLS files, control connections must present
    ``x-api-key`` and ``x-connector-uuid`` equal to :attr:`api_key` and
    :attr:`connector_uuid`. With :attr:`tls_cert`/:attr:`tls_key` the simulator
    speaks ``wss://``; adding :attr:`tls_client_ca` requires a client certificate
    signed by that CA (mTLS), which then replaces the API key check.
    """

    api_key: str = attrs.field(default=DEFAULT_API_KEY, repr=_redact)
    connector_uuid: str = DEFAULT_CONNECTOR_UUID
    tls_cert: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    tls_key: Path | None = attrs.field(
        default=None, converter=attrs.converters.optional(Path), repr=_redact
    )
    tls_client_ca: Path | None = attrs.field(
        default=None, converter=attrs.converters.optional(Path)
    )
    #: Accept only this ``setup`` sample rate (``None``: any of 8000/16000/24000).
    sample_rate: int | None = None
    #: Duration of one audio frame both ways; pull requests prefer this size.
    frame_ms: int = attrs.field(default=20, validator=_positive)
    #: Agent audio the simulator keeps pulled ahead of playout, in frames.
    playout_target_frames: int = attrs.field(default=3, validator=_positive)
    #: Most agent audio held for playout (beyond it, received audio is dropped), in seconds.
    max_playout_seconds: float = attrs.field(default=10.0, validator=_positive)
    #: A playout gap at most this long, followed by more agent audio, is an underrun.
    underrun_max_gap: float = attrs.field(default=0.2, validator=_positive)
    #: How long the platform takes to carry out each command.
    command_latency: float = attrs.field(default=0.0, validator=_non_negative)
    #: Media bearer tokens expire this long after ``call.in``; each opens one
    #: media connection (the handoff model, see the handoff how-to).
    token_ttl: float = attrs.field(default=60.0, validator=_positive)
    #: A caller hangs up after ringing this long unanswered.
    unanswered_timeout: float = attrs.field(default=120.0, validator=_positive)
    #: A call no connection claimed within this time of being placed is *missed*:
    #: connections whose call flow is ``inboundCall: MISSED_ONLY`` are offered it
    #: then (at once if no ``ALL`` connection was there to take it).
    missed_call_after: float = attrs.field(default=10.0, validator=_non_negative)
    #: A control connection must send ``setup`` within this time.
    setup_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Bound on a WebSocket opening handshake (including TLS).
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Bound on every close handshake.
    close_timeout: float = attrs.field(default=2.0, validator=_positive)
    max_message_size: int = attrs.field(default=1 << 20, validator=_positive)
    max_connections: int = attrs.field(default=10_000, validator=_positive)
    max_active_calls: int = attrs.field(default=10_000, validator=_positive)
    #: Frames queued for one control connection before it counts as dead.
    control_outbox_frames: int = attrs.field(default=256, validator=_positive)
    max_commands_in_flight: int = attrs.field(default=16, validator=_positive)
    #: Command records kept per call (the oldest go first).
    max_command_records: int = attrs.field(default=256, validator=_positive)
    #: Agent audio kept per call in :attr:`CallResult.agent_audio`, in seconds.
    keep_agent_audio_seconds: float = attrs.field(default=60.0, validator=_non_negative)
    #: Longest recording written per call and direction, in seconds.
    max_record_seconds: float = attrs.field(default=600.0, validator=_positive)
    #: Results of ended calls kept for :meth:`Simulator.results`.
    max_finished_calls: int = attrs.field(default=1000, validator=_positive)
    #: Largest caller upload accepted from a softphone, in bytes.
    max_upload_bytes: int = attrs.field(default=32 << 20, validator=_positive)
    org_uuid: str = "sim-org"
    #: The connector has a WhatsApp channel (off: ``session.create`` WA is
    #: answered ``CHANNEL_NOT_CONFIGURED``).
    wa_enabled: bool = True
    #: Open WA sessions at most (``session.create`` beyond: ``QUOTA_EXCEEDED``).
    max_wa_sessions: int = attrs.field(default=1000, validator=_positive)
    #: ``wa.msg.out`` awaiting their ack per session (beyond: ``OVERFLOW``).
    wa_max_unacked: int = attrs.field(default=16, validator=_positive)
    #: Messages kept per WA session: waiting for a claim, and received by the user.
    wa_inbox_messages: int = attrs.field(default=256, validator=_positive)
    #: Whether connectors may place outbound calls (``session.create`` with channel
    #: ``TELCO``); ``False`` refuses them with ``CHANNEL_NOT_CONFIGURED``.
    outbound_calls: bool = True
    #: Outbound calls active at once; more are refused with ``QUOTA_EXCEEDED``.
    max_outbound_calls: int = attrs.field(default=1000, validator=_positive)
    #: An outbound call's callee rings this long before the platform gives up.
    outbound_ring_timeout: float = attrs.field(default=60.0, validator=_positive)
    #: The number outbound calls come from (their ``call.in`` ``from``).
    outbound_caller_id: str = "+15550199"
    #: What the callee of an outbound call does, unless :meth:`Simulator.expect_callee`
    #: set a script for that number: by default it answers after 1 s and says nothing.
    callee_script: CallerScript = attrs.field(factory=lambda: CallerScript())
    #: The WebSocket implementation serving every connection: ``"lean"`` (the
    #: default, less CPU per message) or ``"trio-websocket"``. Both serve the
    #: plain HTTP requests of the REST plane and ``telcoflow-trio wa`` too.
    transport: Transport = attrs.field(
        default=DEFAULT_TRANSPORT, validator=attrs.validators.in_(TRANSPORTS)
    )

    def __attrs_post_init__(self) -> None:
        if self.sample_rate is not None and self.sample_rate not in _SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {_SAMPLE_RATES} or None")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mTLS) needs tls_cert and tls_key")
        if not self.api_key or not self.connector_uuid:
            raise ValueError("api_key and connector_uuid must be non-empty")

    @property
    def accepted_sample_rates(self) -> tuple[int, ...]:
        return _SAMPLE_RATES if self.sample_rate is None else (self.sample_rate,)

    @property
    def mtls(self) -> bool:
        """Whether clients authenticate with certificates instead of API keys."""
        return self.tls_client_ca is not None

    def server_ssl_context(self) -> ssl.SSLContext | None:
        """The server TLS context, or ``None`` without TLS.

        Raises:
            OSError, ssl.SSLError: a certificate, key or CA file cannot be loaded.
        """
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_cert, self.tls_key)
        if self.tls_client_ca is not None:
            context.load_verify_locations(cafile=self.tls_client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def _call_errors(value: Any) -> tuple[tuple[float, str], ...]:
    """``(seconds after the answer, error code)`` pairs, sorted by time."""
    try:
        pairs = [(at, code) for at, code in value]
    except (TypeError, ValueError):
        raise ValueError(
            f"call_errors must be (seconds, error code) pairs; got {value!r}"
        ) from None
    for at, code in pairs:
        if isinstance(at, bool) or not isinstance(at, int | float) or at < 0:
            raise ValueError(f"call_errors: {at!r} is not a non-negative number of seconds")
        if not isinstance(code, str) or not code:
            raise ValueError(f"call_errors: {code!r} is not an error code")
    return tuple(sorted(pairs, key=lambda pair: pair[0]))


@attrs.frozen
class CallerScript:
    """What a simulated caller (and the callee of ``call.connect``) does. Times in seconds.

    For an outbound call the script is the called party's: ``audio`` is what it
    says once it answered, ``record_dir`` gets ``caller.wav`` (what it said) and
    ``agent.wav`` (what it heard), and the hang-up options work the same way.

    Caller audio starts when the call is answered (or connected) and is sent as
    one frame per ``frame_ms``; after ``talk_for`` or the end of ``audio`` the
    caller sends silence. The hang-up options combine: whichever comes first.
    """

    audio: AudioSource = attrs.field(factory=Silence, validator=_audio_source)
    #: Seconds of caller audio (``None``: until the call ends or the source does).
    talk_for: float | None = attrs.field(default=None, validator=_non_negative)
    #: Hang up this long after the answer (``None``: never).
    hangup_after: float | None = attrs.field(default=None, validator=_non_negative)
    #: Hang up while still ringing, this long after the call was placed.
    hangup_before_answer_after: float | None = attrs.field(default=None, validator=_non_negative)
    #: Hang up once no agent audio has played for this long (counted from the answer).
    hangup_after_agent_silent: float | None = attrs.field(default=None, validator=_non_negative)
    #: The callee of ``call.connect`` answers after ringing this long
    #: (``None``: never, so the command fails with ``CALL_UNANSWERED``).
    callee_answers_after: float | None = attrs.field(default=1.0, validator=_non_negative)
    #: What the callee says once connected.
    callee_audio: AudioSource = attrs.field(factory=Silence, validator=_audio_source)
    #: ``call.error`` events the platform sends on the call, as ``(seconds after
    #: the answer, error code)`` pairs, e.g. ``((2.0, "TTS_SESSION_ERROR"),)``;
    #: the call goes on.
    call_errors: tuple[tuple[float, str], ...] = attrs.field(default=(), converter=_call_errors)
    #: Write ``caller.wav`` and ``agent.wav`` (time-aligned from the answer) here.
    record_dir: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    #: Outbound calls (this script is the called party's): it answers after
    #: ringing this long (``None``: never; the call ends at ``outbound_ring_timeout``).
    answers_after: float | None = attrs.field(default=1.0, validator=_non_negative)
    #: Outbound calls: at ``answers_after`` the called party declines instead.
    rejects: bool = False


@attrs.frozen
class CommandRecord:
    """One media command as the simulator saw it (times are ``trio.current_time()``)."""

    name: str
    data: dict[str, Any] | None
    received_at: float
    #: ``None`` when the response was never sent (dropped, or the call ended first).
    responded_at: float | None
    success: bool | None
    error_code: str | None
    command_id: str = ""

    @property
    def latency(self) -> float | None:
        """Seconds from receipt to response."""
        return None if self.responded_at is None else self.responded_at - self.received_at


@attrs.frozen
class CallResult:
    """How a simulated call went, from the platform's side.

    ``ended_by`` says who or what ended the call, and ``termination_reason`` the
    reason the platform gave the agent (in ``call.terminated`` and ``session.closed``):

    * ``caller_hangup``, ``CALL_TERMINATED``: the caller hung up, before or after
      the answer;
    * ``unanswered_timeout``, ``CALL_TERMINATED``: the caller gave up ringing;
    * ``agent_close`` / ``agent_disconnect``, ``SDK_REQUEST``: a ``call.close`` /
      ``call.disconnect`` succeeded;
    * ``media_lost``, ``FORCE_CLOSE``: the media connection went away without a
      command: the agent's side closed or dropped it (``media_close_code`` says
      how), or the platform dropped it (the ``drop_media`` fault;
      ``media_close_code`` is ``None``);
    * ``server``, ``FORCE_CLOSE``: the platform ended the call (simulator shutdown,
      the ``close_session`` fault, or an outbound call's agent gone before the media).

    Outbound calls (``outbound``; ``caller`` is ``outbound_caller_id``, ``callee``
    the number called) end the same ways, and also: ``callee_hangup``,
    ``CALL_TERMINATED`` (after the answer); ``callee_rejected``, ``CALL_TERMINATED``;
    ``unanswered_timeout``, ``CALL_TERMINATED`` (rang ``outbound_ring_timeout``).
    """

    call_id: str
    session_id: str
    caller: str
    callee: str
    sample_rate: int | None
    states: tuple[tuple[float, CallState], ...]
    commands: tuple[CommandRecord, ...]
    placed_at: float
    answered_at: float | None
    ended_at: float
    ended_by: str
    termination_reason: str
    caller_audio_seconds: float
    agent_audio_seconds: float
    #: Agent audio as received (PCM16LE), up to ``keep_agent_audio_seconds``.
    agent_audio: bytes = attrs.field(repr=lambda audio: f"<{len(audio)} bytes>")
    #: Playout gaps while agent audio was playing (see ``underrun_max_gap``).
    underruns: int
    first_agent_audio_after_answer: float | None
    #: Agent audio dropped by ``agent.interrupt`` before it was played, in bytes.
    interrupted_bytes: int = 0
    #: Agent audio dropped because the playout buffer was full, in bytes.
    overflow_bytes: int = 0
    #: Agent audio that arrived without a ``buffer_request`` asking for it, in bytes.
    unrequested_bytes: int = 0
    #: Close code of the media socket when the agent side closed it (``None`` otherwise).
    media_close_code: int | None = None
    recordings: tuple[Path, ...] = ()
    #: Placed by the agent (``session.create``), not by the simulator.
    outbound: bool = False

    @property
    def final_state(self) -> CallState:
        return self.states[-1][1]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict of the result, without the audio bytes."""
        return {
            "callId": self.call_id,
            "sessionId": self.session_id,
            "caller": self.caller,
            "callee": self.callee,
            "sampleRate": self.sample_rate,
            "states": [[t, str(s)] for t, s in self.states],
            "commands": [
                {
                    "name": c.name,
                    "success": c.success,
                    "errorCode": c.error_code,
                    "latency": c.latency,
                }
                for c in self.commands
            ],
            "answeredAfter": None
            if self.answered_at is None
            else self.answered_at - self.placed_at,
            "duration": self.ended_at - self.placed_at,
            "endedBy": self.ended_by,
            "terminationReason": self.termination_reason,
            "callerAudioSeconds": self.caller_audio_seconds,
            "agentAudioSeconds": self.agent_audio_seconds,
            "underruns": self.underruns,
            "firstAgentAudioAfterAnswer": self.first_agent_audio_after_answer,
            "interruptedBytes": self.interrupted_bytes,
            "recordings": [str(p) for p in self.recordings],
            "outbound": self.outbound,
        }


@attrs.frozen
class SimulatorStatistics:
    """Counters of a running simulator (``*_total`` count since start).

    Attributes:
        calls_unclaimed: calls ringing now that no worker holds (offered, not
            claimed yet, or their worker's control connection dropped).
        calls_abandoned_unclaimed: calls that ended before any worker claimed
            them (every worker full, none connected, or too slow).
        sessions_busy: ``session.open`` refused with ``SESSION_BUSY`` because
            another worker had the session.
        calls_outbound: outbound calls created (``session.create`` accepted);
            they are not in ``calls_placed``, but are in ``calls_active`` and
            ``calls_ended``.
    """

    control_connections: int
    control_connections_total: int
    media_connections: int
    media_connections_total: int
    connections: int
    calls_placed: int
    calls_active: int
    calls_ended: int
    auth_rejections: int
    malformed_frames: int
    handler_errors: int
    calls_unclaimed: int
    calls_abandoned_unclaimed: int
    sessions_busy: int
    calls_outbound: int
