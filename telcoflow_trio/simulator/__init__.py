"""The Telcoflow simulator: a reference platform server for development, tests and demos.

It speaks the wire protocol of the released ``telcoflow`` 1.0.0 SDK (control
plane at ``/v1/agent/session-manager``, per-call media connections), places
scripted inbound calls, records what happened on each, and injects faults::

    async with open_simulator(SimulatorConfig(), listen=True) as sim:
        call = await sim.place_call(CallerScript(tone(440), hangup_after=5))
        result = await call.wait_result()

``sim.open_stream`` connects a client in memory (no sockets), so a whole call
runs deterministically under trio's ``MockClock``.
"""

from ._audio import (
    AudioSource as AudioSource,
    noise as noise,
    pcm_source as pcm_source,
    silence as silence,
    tone as tone,
    wav_source as wav_source,
)
from ._call import SimulatedCall as SimulatedCall
from ._connection import FrameLog as FrameLog, JsonLinesFrameLog as JsonLinesFrameLog
from ._faults import SimulatorFaults as SimulatorFaults
from ._model import (
    DEFAULT_API_KEY as DEFAULT_API_KEY,
    DEFAULT_CONNECTOR_UUID as DEFAULT_CONNECTOR_UUID,
    CallerScript as CallerScript,
    CallResult as CallResult,
    CommandRecord as CommandRecord,
    SimulatorConfig as SimulatorConfig,
    SimulatorStatistics as SimulatorStatistics,
)
from ._server import (
    CONTROL_PATH as CONTROL_PATH,
    MEDIA_PATH_PREFIX as MEDIA_PATH_PREFIX,
    SOFTPHONE_PATH as SOFTPHONE_PATH,
    WA_USER_PATH as WA_USER_PATH,
    Simulator as Simulator,
    open_simulator as open_simulator,
    serve_simulator as serve_simulator,
)
from ._softphone import SoftphoneCall as SoftphoneCall, run_softphone as run_softphone
from ._wa import WaMessage as WaMessage, WaPlatform as WaPlatform, WaSession as WaSession

__all__ = [
    "CONTROL_PATH",
    "DEFAULT_API_KEY",
    "DEFAULT_CONNECTOR_UUID",
    "MEDIA_PATH_PREFIX",
    "SOFTPHONE_PATH",
    "WA_USER_PATH",
    "AudioSource",
    "CallResult",
    "CallerScript",
    "CommandRecord",
    "FrameLog",
    "JsonLinesFrameLog",
    "SimulatedCall",
    "Simulator",
    "SimulatorConfig",
    "SimulatorFaults",
    "SimulatorStatistics",
    "SoftphoneCall",
    "WaMessage",
    "WaPlatform",
    "WaSession",
    "noise",
    "open_simulator",
    "pcm_source",
    "run_softphone",
    "serve_simulator",
    "silence",
    "tone",
    "wav_source",
]
