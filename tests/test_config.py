"""TelcoflowClientConfig: factories, validation, and no secrets in reprs."""

from __future__ import annotations

import pytest

from telcoflow_trio import TelcoflowClientConfig
from telcoflow_trio.config import PRODUCTION_URL, AudioMode, AuthMode


def test_sandbox_defaults_match_sdk_024() -> None:
    config = TelcoflowClientConfig.sandbox("key-123", "conn-9")
    assert config.auth_mode is AuthMode.SANDBOX
    assert config.sample_rate == 24000
    assert config.base_url == PRODUCTION_URL
    assert config.control_url == PRODUCTION_URL + "/v1/agent/session-manager"
    assert config.sdk_version == "1.0.0"
    assert config.audio_mode is AudioMode.MIXED
    assert ("x-api-key", "key-123") in config.auth_headers()
    assert ("x-connector-uuid", "conn-9") in config.auth_headers()
    assert ("x-sdk-version", "1.0.0") in config.auth_headers()


def test_options_and_trailing_slash() -> None:
    config = TelcoflowClientConfig.sandbox(
        "k", "c", 8000, base_url="ws://127.0.0.1:8080/", buffer_size=4096, audio_mode="isolated"
    )
    assert config.control_url == "ws://127.0.0.1:8080/v1/agent/session-manager"
    assert config.ssl_context() is None
    assert config.audio_mode is AudioMode.ISOLATED


def test_secrets_never_in_repr_or_str() -> None:
    config = TelcoflowClientConfig.sandbox("very-secret-key", "conn")
    assert "very-secret-key" not in repr(config)
    assert "very-secret-key" not in str(config)
    prod = TelcoflowClientConfig.production("/etc/c/client.pem", "/etc/c/client.key")
    assert "client.key" not in repr(prod)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"sample_rate": 44100}, "sample_rate must be one of 8000, 16000, 24000; got 44100"),
        ({"buffer_size": 1000}, "buffer_size must be a positive power of two; got 1000"),
        ({"base_url": "http://x"}, "base_url must be a ws:// or wss:// URL"),
        ({"heartbeat_interval": 0}, "heartbeat_interval must be a positive number"),
        ({"audio_mode": "stereo"}, "'stereo' is not a valid AudioMode"),
        ({"sdk_version": ""}, "sdk_version must be a non-empty string"),
    ],
)
def test_validation_names_the_field(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        TelcoflowClientConfig.sandbox("k", "c", **options)


def test_auth_modes_are_exclusive_and_complete() -> None:
    with pytest.raises(ValueError, match="needs both api_key and connector_uuid"):
        TelcoflowClientConfig(auth_mode="sandbox", api_key="k")
    with pytest.raises(ValueError, match="needs both cert_path and key_path"):
        TelcoflowClientConfig(auth_mode="production", cert_path="c")
    with pytest.raises(ValueError, match="takes no api_key"):
        TelcoflowClientConfig(auth_mode="production", cert_path="c", key_path="k", api_key="x")


def test_frozen() -> None:
    config = TelcoflowClientConfig.sandbox("k", "c")
    with pytest.raises(AttributeError):
        config.sample_rate = 8000  # type: ignore[misc]
