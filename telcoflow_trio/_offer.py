"""The public :class:`CallOffer`: a call arrived, its media connection not open yet.

With a ``CALL_OFFERED`` handler registered, each call the client receives goes
to it first, before the media connection opens. The handler either returns
(the call is served here as usual: media opens, then ``INCOMING_CALL`` runs)
or calls :meth:`CallOffer.to_json` and sends the document to another process,
which takes the call over with
:meth:`TelcoflowClient.adopt_call <telcoflow_trio.TelcoflowClient.adopt_call>`
(or the 1.0.0 SDK's ``Call.from_json``).
"""

from __future__ import annotations

from typing import final

from . import proto
from .exceptions import WSSCallStateError

__all__ = ["CallOffer", "CallParties"]


class CallParties:
    """The id and numbers of a call, from its ``call.in`` (an offer's and an
    active call's)."""

    _call_in: proto.CallIn

    @property
    def call_id(self) -> str:
        """The platform's id of the call."""
        return self._call_in.call_id

    @property
    def id(self) -> str:
        """Same as :attr:`call_id` (the 1.0.0 name)."""
        return self._call_in.call_id

    @property
    def caller_number(self) -> str:
        """Who is calling (``from``)."""
        return self._call_in.caller

    @property
    def callee_number(self) -> str:
        """The number that was called (``to``); ``connect()`` rings it."""
        return self._call_in.callee


@final
class CallOffer(CallParties):
    """A call before its media connection opens, given to the ``CALL_OFFERED`` handler.

    Created only by :class:`~telcoflow_trio.TelcoflowClient`. Its repr never
    shows the media token.
    """

    def __init__(self, call_in: proto.CallIn, sample_rate: int, audio_mode: str) -> None:
        self._call_in = call_in
        self._audio = (sample_rate, audio_mode)
        self._handed_off = False
        self._open = True  # while the CALL_OFFERED handler runs

    def __repr__(self) -> str:
        state = " handed off" if self._handed_off else ""
        return f"<CallOffer {self._call_in.call_id}{state}>"

    @property
    def handed_off(self) -> bool:
        """Whether :meth:`to_json` was called: the call leaves this client."""
        return self._handed_off

    def to_json(self) -> str:
        """Hand the call off: its handoff document, for another process to adopt.

        The document is telcoflow 1.0.0's ``Call.to_json()``:
        ``{"channel": "TELCO", "id", "caller", "callee", "session_url",
        "session_token"}``, plus this client's ``sample_rate`` and
        ``audio_mode`` (which the call's media now has; 1.0.0 ignores the two
        keys, and :meth:`~telcoflow_trio.TelcoflowClient.adopt_call` checks
        them). **It is a secret**: the token opens the call's media,
        once, for a limited time (the platform's choice). Send it over a trusted
        channel and do not log it.

        Once the handler returns, this client forgets the call (it ends here
        with ``TerminationReason.HANDED_OFF``; no media, no ``INCOMING_CALL``).
        If the handler raises instead, the call is served here after all.

        Raises:
            WSSCallStateError: the ``CALL_OFFERED`` handler has already returned
                (the media connection may be open: the call is bound here).
        """
        if not self._open:
            raise WSSCallStateError(
                f"call {self.call_id}: to_json() is only allowed inside the CALL_OFFERED "
                "handler, before the media connection opens"
            )
        self._handed_off = True
        rate, mode = self._audio
        return proto.encode_handoff(self._call_in, sample_rate=rate, audio_mode=mode)
