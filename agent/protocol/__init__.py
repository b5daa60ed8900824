"""The RPC protocol, sans-I/O: frames and a connection state machine, no sockets.

See docs/protocol.md for the wire format.
"""

from agent.protocol.connection import SUPPORTED_VERSIONS, Connection
from agent.protocol.frames import Data, data_frame, decode_frame, message_frame
from agent.protocol.limits import Limits
from agent.protocol.messages import Call, Hello

__all__ = [
    "SUPPORTED_VERSIONS",
    "Call",
    "Connection",
    "Data",
    "Hello",
    "Limits",
    "data_frame",
    "decode_frame",
    "message_frame",
]
