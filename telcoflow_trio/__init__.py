"""telcoflow_trio: trio-native voice agents on the Telcoflow telephony platform."""

from ._version import __version__ as __version__
from .config import TelcoflowClientConfig as TelcoflowClientConfig
