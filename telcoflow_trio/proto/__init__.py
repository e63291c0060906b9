"""The sans-IO core of the Telcoflow protocol.

Frames, their encoding, the call state table, command correlation, flow-control
arithmetic, the reconnect policy and the claim policy. Nothing here imports trio or a WebSocket
library or reads a clock: the time is always passed in as ``now``. The client,
the simulator and the test kit all build on it.
"""

from ._backoff import Backoff as Backoff, BackoffPolicy as BackoffPolicy
from ._claim import (
    CLAIM_LATENCY_BUCKETS as CLAIM_LATENCY_BUCKETS,
    ClaimMode as ClaimMode,
    ClaimPolicy as ClaimPolicy,
    LagMeter as LagMeter,
    LatencyHistogram as LatencyHistogram,
)
from ._commands import (
    CommandTracker as CommandTracker,
    PendingCommand as PendingCommand,
    request_error as request_error,
    response_error as response_error,
)
from ._flow import (
    SAMPLE_WIDTH as SAMPLE_WIDTH,
    OutgoingAudio as OutgoingAudio,
    SendCredit as SendCredit,
    frame_bytes as frame_bytes,
)
from ._frames import (
    MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES,
    AudioFrame as AudioFrame,
    BufferRequest as BufferRequest,
    CallEventFrame as CallEventFrame,
    CallFlowSetup as CallFlowSetup,
    CallIn as CallIn,
    ChannelType as ChannelType,
    Command as Command,
    CommandResponse as CommandResponse,
    ControlFrame as ControlFrame,
    MediaFrame as MediaFrame,
    MessageErrorCode as MessageErrorCode,
    Response as Response,
    SessionClosed as SessionClosed,
    SessionCreate as SessionCreate,
    SessionNotify as SessionNotify,
    SessionOpen as SessionOpen,
    SessionReady as SessionReady,
    Setup as Setup,
    SetupDone as SetupDone,
    UnknownFrame as UnknownFrame,
    WaMsgIn as WaMsgIn,
    WaMsgOut as WaMsgOut,
    decode_control as decode_control,
    decode_media as decode_media,
)
from ._handoff import (
    MAX_HANDOFF_BYTES as MAX_HANDOFF_BYTES,
    Handoff as Handoff,
    decode_handoff as decode_handoff,
    encode_handoff as encode_handoff,
)
from ._rest import (
    SESSIONS_PATH as SESSIONS_PATH,
    CloseResult as CloseResult,
    SessionInfo as SessionInfo,
    close_path as close_path,
    decode_close as decode_close,
    decode_error as decode_error,
    decode_sessions as decode_sessions,
    encode_error as encode_error,
    encode_sessions as encode_sessions,
    http_base_url as http_base_url,
    sessions_target as sessions_target,
)
from ._states import (
    TRANSITIONS as TRANSITIONS,
    CallCommand as CallCommand,
    CallState as CallState,
    check_command as check_command,
    next_state as next_state,
)

#: Control-plane error codes of ``response.errorCode`` (spec B.6).
CONTROL_ERROR_CODES = frozenset(
    {
        "CHANNEL_NOT_CONFIGURED",
        "SESSION_CLOSED",
        "SESSION_NOT_FOUND",
        "SESSION_NOT_OPEN",
        "QUOTA_EXCEEDED",
        "OUTBOUND_OVERFLOW",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "INVALID_REQUEST",
        "SESSION_BUSY",
    }
)
