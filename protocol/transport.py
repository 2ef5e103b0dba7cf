"""The transport, in one import: publisher (PUB), control (ROUTER/DEALER) and the UI's live feed.

The pieces live in their own modules (`publisher`, `control`, `live_feed`,
`endpoints`, `security`); this module is the stable name others import from.
"""

from .control import LOOP_COMMANDS, SERVER_COMMANDS, ControlClient, ControlError, ControlReply, ControlRequest, ControlServer
from .endpoints import DEFAULT_CONTROL, DEFAULT_PUB, control_endpoint_for, is_loopback
from .live_feed import LiveFeed
from .publisher import Publisher

__all__ = [
    "DEFAULT_CONTROL",
    "DEFAULT_PUB",
    "LOOP_COMMANDS",
    "SERVER_COMMANDS",
    "ControlClient",
    "ControlError",
    "ControlReply",
    "ControlRequest",
    "ControlServer",
    "LiveFeed",
    "Publisher",
    "control_endpoint_for",
    "is_loopback",
]
