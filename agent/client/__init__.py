"""The library a server uses to reach agents (the hub, the tests and `tentacle client`)."""

from agent.client.agent_client import AgentClient, Endpoint
from agent.client.discovery import Discovered, discover
from agent.client.polling_listener import AgentNotConnected, PollingListener
from agent.client.scripts import LogChunk, ScriptRequest, execute_script
from agent.transport.settings import ChannelSettings

__all__ = [
    "AgentClient",
    "AgentNotConnected",
    "ChannelSettings",
    "Discovered",
    "Endpoint",
    "LogChunk",
    "PollingListener",
    "ScriptRequest",
    "discover",
    "execute_script",
]
