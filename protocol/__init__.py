"""lorascope wire protocol: frame schema, codec, transport, recording. Imports neither torch nor textual."""

from .frames import FRAME_TYPES, PROTOCOL_MAJOR, PROTOCOL_MINOR, PROTOCOL_VERSION  # noqa: F401
