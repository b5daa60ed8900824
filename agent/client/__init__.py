"""The library a server uses to reach agents (the hub, the tests and `tentacle client`)."""

from agent.client.agent_client import AgentClient, Endpoint
from agent.client.polling_listener import PollingListener

__all__ = ["AgentClient", "Endpoint", "PollingListener"]
