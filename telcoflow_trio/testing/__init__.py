"""telcoflow_trio.testing: tools for testing voice agents deterministically.

* :func:`open_agent_test` runs your ``INCOMING_CALL`` handler against an
  in-process simulator over in-memory streams; scripted callers ring it and
  each call comes back as a :class:`CallReport` with assertion helpers.
* :func:`open_memory_server` is an in-memory WebSocket server, for the far end
  of a stream bridge.
* Audio: :func:`make_tone`, :func:`make_silence`, :func:`read_wav`,
  :func:`write_wav` to make it; :func:`rms`, :func:`is_silent`,
  :func:`tone_share`, :func:`contains_tone`, :func:`correlation` to check it.
* A pytest plugin (loaded automatically) with the ``telcoflow_agent``,
  ``telcoflow_simulator`` and ``telcoflow_simulator_config`` fixtures.

``telcoflow_trio.testing.teler`` has a Teler media-stream peer for testing
stream bridges.
"""

from ..simulator import (
    CallerScript as CallerScript,
    noise as noise,
    pcm_source as pcm_source,
    silence as silence,
    tone as tone,
    wav_source as wav_source,
)
from ._audio import (
    audio_seconds as audio_seconds,
    contains_tone as contains_tone,
    correlation as correlation,
    is_silent as is_silent,
    make_silence as make_silence,
    make_tone as make_tone,
    read_wav as read_wav,
    rms as rms,
    tone_share as tone_share,
    write_wav as write_wav,
)
from ._harness import (
    AgentHandlerError as AgentHandlerError,
    AgentHarness as AgentHarness,
    CallReport as CallReport,
    open_agent_test as open_agent_test,
)
from ._memory import (
    MemoryServer as MemoryServer,
    echo as echo,
    open_memory_server as open_memory_server,
)

__all__ = [
    "AgentHandlerError",
    "AgentHarness",
    "CallReport",
    "CallerScript",
    "MemoryServer",
    "audio_seconds",
    "contains_tone",
    "correlation",
    "echo",
    "is_silent",
    "make_silence",
    "make_tone",
    "noise",
    "open_agent_test",
    "open_memory_server",
    "pcm_source",
    "read_wav",
    "rms",
    "silence",
    "tone",
    "tone_share",
    "wav_source",
    "write_wav",
]
