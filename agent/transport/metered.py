"""Counting a channel's life in an agent's metrics (agent.observability.metrics)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from agent.transport.channel import Channel

if TYPE_CHECKING:
    from agent.observability.metrics import AgentMetrics


@contextlib.contextmanager
def counted_connection(metrics: AgentMetrics | None, kind: str, channel: Channel) -> Iterator[None]:
    """Count ``channel`` (a ``kind`` connection: listening or polling) as open for the
    block, and as a heartbeat miss if it closed because its peer fell silent."""
    if metrics is None:
        yield
        return
    metrics.opened(kind)
    try:
        yield
    finally:
        metrics.closed(kind, silent=channel.went_silent)
