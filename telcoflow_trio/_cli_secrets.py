"""The API key options of the commands: ``--api-key``, ``--api-key-file``, the environment.

A key given with ``--api-key`` is visible to every user of the machine in ``ps``
and in the shell history, so each command also takes it from
``$TELCOFLOW_API_KEY`` or from a file (``--api-key-file``, or
``$TELCOFLOW_API_KEY_FILE``: a Kubernetes secret mounted as a file). Messages
about the key name where it came from, never its value.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = [
    "API_KEY_ENV",
    "API_KEY_FILE_ENV",
    "UsageError",
    "add_api_key_arguments",
    "api_key_from",
]

API_KEY_ENV: Final = "TELCOFLOW_API_KEY"
API_KEY_FILE_ENV: Final = "TELCOFLOW_API_KEY_FILE"


class UsageError(Exception):
    """A mistake on the command line or in the environment; the message is one line."""


def add_api_key_arguments(parser: argparse.ArgumentParser, *, default_note: str) -> None:
    """Add ``--api-key`` and ``--api-key-file`` (mutually exclusive) to ``parser``.

    ``default_note`` ends the help text: what is used when no key is given.
    """
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help=f"read the API key from this file (or ${API_KEY_FILE_ENV})",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        help=f"the API key; visible to other users in `ps`: prefer ${API_KEY_ENV} or "
        f"--api-key-file ({default_note})",
    )


def api_key_from(
    args: argparse.Namespace | Mapping[str, object], environ: Mapping[str, str]
) -> str | None:
    """The API key: ``--api-key-file``, ``--api-key``, ``$TELCOFLOW_API_KEY_FILE`` or
    ``$TELCOFLOW_API_KEY``, the first that is set; ``None`` if none is.

    Raises:
        UsageError: the key file cannot be read or is empty, or a key is empty.
    """
    values = vars(args) if isinstance(args, argparse.Namespace) else args
    path = values.get("api_key_file")
    if isinstance(path, Path):
        return _read_key(path, "--api-key-file")
    key = values.get("api_key")
    if isinstance(key, str):
        if not key.strip():
            raise UsageError("--api-key is empty")
        return key
    if environ.get(API_KEY_FILE_ENV):
        return _read_key(Path(environ[API_KEY_FILE_ENV]), f"${API_KEY_FILE_ENV}")
    if API_KEY_ENV in environ:
        if not environ[API_KEY_ENV].strip():
            raise UsageError(f"${API_KEY_ENV} is empty")
        return environ[API_KEY_ENV]
    return None


def _read_key(path: Path, source: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise UsageError(f"cannot read the API key file {path} ({source}): {why}") from None
    key = text.strip()
    if not key or "\n" in key:
        raise UsageError(f"the API key file {path} ({source}) must hold the key on one line")
    return key
