"""telcoflow_trio: trio-native voice agents on the Telcoflow telephony platform."""

from . import events as events, exceptions as exceptions
from ._call import (
    ActiveCall as ActiveCall,
    CallErrorInfo as CallErrorInfo,
    CallStatistics as CallStatistics,
    TerminationInfo as TerminationInfo,
    TerminationReason as TerminationReason,
)
from ._client import ClientStatistics as ClientStatistics, TelcoflowClient as TelcoflowClient
from ._logging import CallIdFilter as CallIdFilter, current_call_id as current_call_id
from ._offer import CallOffer as CallOffer
from ._session import IncomingMessage as IncomingMessage, Session as Session
from ._version import __version__ as __version__
from .config import (
    ClaimMode as ClaimMode,
    ClaimPolicy as ClaimPolicy,
    TelcoflowClientConfig as TelcoflowClientConfig,
)
from .events import (
    CallErrorCode as CallErrorCode,
    CallEvent as CallEvent,
    CallState as CallState,
    ChannelType as ChannelType,
    ClientEvent as ClientEvent,
    InboundCallMode as InboundCallMode,
    MessageErrorCode as MessageErrorCode,
)
from .proto import (
    CloseResult as CloseResult,
    LatencyHistogram as LatencyHistogram,
    SessionInfo as SessionInfo,
)

__all__ = [
    "ActiveCall",
    "CallErrorCode",
    "CallErrorInfo",
    "CallEvent",
    "CallIdFilter",
    "CallOffer",
    "CallState",
    "CallStatistics",
    "ChannelType",
    "ClaimMode",
    "ClaimPolicy",
    "ClientEvent",
    "ClientStatistics",
    "CloseResult",
    "InboundCallMode",
    "IncomingMessage",
    "LatencyHistogram",
    "MessageErrorCode",
    "Session",
    "SessionInfo",
    "TelcoflowClient",
    "TelcoflowClientConfig",
    "TerminationInfo",
    "TerminationReason",
    "__version__",
    "current_call_id",
    "events",
    "exceptions",
]
