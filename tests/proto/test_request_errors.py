"""Refused control requests become the exception their error code names (spec B.6)."""

from __future__ import annotations

import pytest

from telcoflow_trio import exceptions as ex
from telcoflow_trio.proto import Response, request_error


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("CHANNEL_NOT_CONFIGURED", ex.WSSChannelNotConfigured),
        ("FORBIDDEN", ex.WSSForbidden),
        ("INVALID_REQUEST", ex.WSSInvalidRequest),
        ("QUOTA_EXCEEDED", ex.WSSQuotaExceeded),
        ("OUTBOUND_OVERFLOW", ex.WSSOutboundOverflow),
        ("SESSION_CLOSED", ex.WSSSessionClosed),
        ("SESSION_NOT_FOUND", ex.WSSSessionNotFound),
        ("SESSION_NOT_OPEN", ex.WSSSessionNotOpen),
        ("SOMETHING_NEW", ex.WSSRequestError),
        (None, ex.WSSRequestError),
    ],
)
def test_codes_map_to_classes(code: str | None, cls: type[ex.WSSRequestError]) -> None:
    error = request_error(Response("r", False, None, code, {"message": "why"}), "session.create")
    assert type(error) is cls
    assert error.error_code == code
    assert str(error) == f"session.create refused: {code or 'no error code'} (why)"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("SOMETHING_NEW", ex.WSSSessionError),
        (None, ex.WSSSessionError),
        ("FORBIDDEN", ex.WSSForbidden),
    ],
)
def test_unknown_codes_of_session_requests_are_session_errors(
    code: str | None, cls: type[ex.WSSRequestError]
) -> None:
    response = Response("r", False, None, code, {"message": "why"})
    error = request_error(response, "session.create", session=True)
    assert type(error) is cls
    assert error.error_content == {"message": "why"}
    assert type(ex.refusal("GET /x", code, "why", session=True)) is cls


def test_unauthorized_is_an_authentication_error() -> None:
    error = request_error(Response("r", False, None, "UNAUTHORIZED"), "call_flow.setup")
    assert type(error) is ex.WSSAuthenticationError
    assert str(error) == "call_flow.setup refused: UNAUTHORIZED"


def test_session_busy_names_the_owner() -> None:
    error = request_error(
        Response("r", False, None, "SESSION_BUSY", {"boundSmWsId": "sm-1"}), "session.open"
    )
    assert isinstance(error, ex.WSSSessionBusy)
    assert error.bound_sm_ws_id == "sm-1"
    assert error.error_content == {"boundSmWsId": "sm-1"}


def test_ok_is_no_error() -> None:
    assert request_error(Response("r", True, {"x": 1}), "call_flow.setup") is None
