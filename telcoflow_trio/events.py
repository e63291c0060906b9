"""Event names for ``client.on(...)`` and ``call.on(...)``, as in SDK 0.24.

The module-level constants and the :class:`ClientEvent` / :class:`CallEvent` enums
are interchangeable (the enums are ``str`` subclasses)::

    @client.on(events.INCOMING_CALL)
    async def on_call(call): ...

    @call.on(CallEvent.CALL_TERMINATED)
    def ended(): ...
"""

from __future__ import annotations

import enum

from .proto._frames import ChannelType, MessageErrorCode
from .proto._states import CallState

__all__ = [
    "CALL_ANSWERED",
    "CALL_ANSWER_FAILED",
    "CALL_CONNECTED",
    "CALL_CONNECT_FAILED",
    "CALL_ERROR",
    "CALL_OFFERED",
    "CALL_TERMINATED",
    "INCOMING_CALL",
    "INCOMING_MESSAGE",
    "CallErrorCode",
    "CallEvent",
    "CallState",
    "ChannelType",
    "ClientEvent",
    "InboundCallMode",
    "MessageErrorCode",
]


class ClientEvent(enum.StrEnum):
    """Events of the client as a whole."""

    #: A call arrived; the handler gets the :class:`~telcoflow_trio.ActiveCall`
    #: with its media connection already open.
    INCOMING_CALL = "call.incoming"
    #: A WhatsApp message arrived on a session the client claimed for it; the
    #: handler gets the :class:`~telcoflow_trio.IncomingMessage`.
    INCOMING_MESSAGE = "message.incoming"
    #: A call arrived and its media connection is not open yet: the handler
    #: gets a :class:`~telcoflow_trio.CallOffer` and may hand the call to
    #: another process (:meth:`~telcoflow_trio.CallOffer.to_json`); when it
    #: returns without doing so, the call is served here (``INCOMING_CALL``).
    CALL_OFFERED = "call.offered"


class CallEvent(enum.StrEnum):
    """Events of one call. Handlers take no arguments, except ``CALL_ERROR``'s
    and the ``*_FAILED`` ones, which may take the error as their one argument."""

    #: The call ended, for whatever reason (exactly once per call).
    CALL_TERMINATED = "call.terminated"
    #: ``answer()`` succeeded.
    CALL_ANSWERED = "call.answered"
    #: ``connect()`` succeeded.
    CALL_CONNECTED = "call.connected"
    #: ``answer()`` failed; the call stays PENDING.
    CALL_ANSWER_FAILED = "call.answer_failed"
    #: ``connect()`` failed (for example ``CALL_UNANSWERED``); the state is unchanged.
    CALL_CONNECT_FAILED = "call.connect_failed"
    #: The server reported an error on the call (``call.error``).
    CALL_ERROR = "call.error"


class CallErrorCode(enum.StrEnum):
    """Known ``error_code`` values of ``CALL_ERROR`` (:attr:`CallErrorInfo.error_code`).

    Other codes may arrive; compare against these members rather than assume
    the list is complete.
    """

    #: The platform's text-to-speech session failed; the call goes on.
    TTS_SESSION_ERROR = "TTS_SESSION_ERROR"


class InboundCallMode(enum.StrEnum):
    """Which inbound calls a connection is offered (``setup_call_flow(inbound_call=...)``)."""

    #: Every inbound call.
    ALL = "ALL"
    #: Only calls that went unanswered elsewhere: no ``ALL`` connection took them.
    MISSED_ONLY = "MISSED_ONLY"
    #: None: the connection only places calls or handles messages.
    NO = "NO"


INCOMING_CALL = ClientEvent.INCOMING_CALL
INCOMING_MESSAGE = ClientEvent.INCOMING_MESSAGE
CALL_OFFERED = ClientEvent.CALL_OFFERED
CALL_TERMINATED = CallEvent.CALL_TERMINATED
CALL_ANSWERED = CallEvent.CALL_ANSWERED
CALL_CONNECTED = CallEvent.CALL_CONNECTED
CALL_ANSWER_FAILED = CallEvent.CALL_ANSWER_FAILED
CALL_CONNECT_FAILED = CallEvent.CALL_CONNECT_FAILED
CALL_ERROR = CallEvent.CALL_ERROR
