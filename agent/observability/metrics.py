"""The metric objects of one agent (AgentMetrics) or one hub (HubMetrics).

Each owns its own CollectorRegistry, never prometheus-client's global default:
two agents (or an agent and a hub) in one process, a test's, count apart.
Names follow Prometheus's conventions: a ``tentacle_agent_`` or ``tentacle_hub_``
prefix, the unit in the name (``_seconds``, ``_bytes``), ``_total`` on counters.
Label values come from small fixed sets (an exit code class, a service's name,
a health status); never a ticket, a worker's name or anything else a caller
chooses, so that a scrape's size stays bounded however long the process runs.

Instrumented code takes one of these as an optional argument (None: not
counted); nothing here is a module-level global.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from agent import __version__
from agent.observability.heartbeat import HEARTBEAT_FILE, Heartbeat
from agent.protocol.services import ExitCode

# exit code classes: what a script's exit code says, in a few words
EXIT_CLASSES: dict[int, str] = {
    ExitCode.FATAL: "agent_error",
    ExitCode.LAUNCH_FAILED: "launch_failed",
    ExitCode.CANCELLED: "cancelled",
    ExitCode.TIMEOUT: "mutex_timeout",
    ExitCode.UNKNOWN_SCRIPT: "unknown_result",
    ExitCode.UNKNOWN_RESULT: "unknown_result",
}
SUCCESS, FAILURE = "success", "failure"
CONNECTION_KINDS = ("listening", "polling")
DIRECTIONS = ("upload", "download")
OTHER = "other"  # the label value of a call to a service or method the agent does not serve

# the latency buckets of calls: most answer in milliseconds, uploads take longer
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)

# workspace_bytes: at most this many entries are looked at per computation, and a
# computation is reused for this many seconds (a scrape every 15 s of a Work folder
# holding a million files must not stat them all each time)
WORKSPACE_SCAN_LIMIT = 20_000
WORKSPACE_SCAN_REUSE = 30.0


def exit_class(code: int) -> str:
    """The class of a script's exit code: success, failure (its own non-zero code) or
    the reserved outcome's name (cancelled, mutex_timeout, launch_failed, ...)."""
    if code == 0:
        return SUCCESS
    return EXIT_CLASSES.get(code, FAILURE)


class AgentMetrics:
    """Everything an agent counts. ``home`` is the instance's home (free disk is measured
    there) and ``work`` its scripts' Work folder (workspace bytes); either may be None."""

    def __init__(self, home: Path | None = None, work: Path | None = None) -> None:
        self.registry = registry = CollectorRegistry()
        p = "tentacle_agent_"
        Info(p + "build", "the agent's version", registry=registry).info({"version": __version__})
        self.scripts_started = Counter(p + "scripts_started", "scripts launched",
                                       registry=registry)  # fmt: skip
        self.scripts_running = Gauge(p + "scripts_running", "scripts running now",
                                     registry=registry)  # fmt: skip
        self.scripts_finished = Counter(
            p + "scripts_finished",
            "scripts finished, by exit code class (success, failure: the script's own "
            "non-zero code, or the agent's reserved outcome)",
            ["exit_class"],
            registry=registry,
        )
        for name in (SUCCESS, FAILURE, *sorted(set(EXIT_CLASSES.values()))):
            self.scripts_finished.labels(name)
        self.mutex_waiting = Gauge(p + "mutex_waiting_scripts",
                                   "scripts waiting for an isolation mutex now",
                                   registry=registry)  # fmt: skip
        self.mutex_waits = Counter(p + "mutex_waits", "times a script had to wait for its "
                                   "isolation mutex", registry=registry)  # fmt: skip
        self.mutex_wait_seconds = Histogram(
            p + "mutex_wait_seconds", "how long scripts that had to wait for their isolation "
            "mutex waited (granted, timed out or cancelled)", buckets=WAIT_BUCKETS,
            registry=registry,
        )  # fmt: skip
        self.connections = Gauge(p + "connections", "connections open now, by kind",
                                 ["kind"], registry=registry)  # fmt: skip
        self.connections_opened = Counter(p + "connections_opened", "connections opened "
                                          "(a hello exchanged), by kind", ["kind"],
                                          registry=registry)  # fmt: skip
        self.heartbeat_misses = Counter(p + "heartbeat_misses", "connections closed because "
                                        "the peer fell silent (no heartbeat), by kind", ["kind"],
                                        registry=registry)  # fmt: skip
        for kind in CONNECTION_KINDS:
            self.connections.labels(kind)
            self.connections_opened.labels(kind)
            self.heartbeat_misses.labels(kind)
        self.open_connections: dict[str, int] = dict.fromkeys(CONNECTION_KINDS, 0)
        self.reconnects = Counter(p + "polling_reconnects", "polling connections dialled "
                                  "again after a failed dial or a lost connection",
                                  registry=registry)  # fmt: skip
        self.call_seconds = Histogram(
            p + "call_duration_seconds", "time to answer a call, by service and method "
            "(until its answer, not its stream, is ready)", ["service", "method"],
            buckets=CALL_BUCKETS, registry=registry,
        )  # fmt: skip
        self.transfer_bytes = Counter(p + "file_transfer_bytes", "bytes of files.upload "
                                      "(received whole) and files.download (sent), by direction",
                                      ["direction"], registry=registry)  # fmt: skip
        for direction in DIRECTIONS:
            self.transfer_bytes.labels(direction)
        self.disk_free_bytes = Gauge(p + "disk_free_bytes", "free bytes on the instance "
                                     "home's filesystem", registry=registry)  # fmt: skip
        self.disk_free_bytes.set_function(lambda: _free_bytes(home))
        self.workspace = WorkspaceSize(work)
        self.workspace_bytes = Gauge(p + "workspace_bytes", "bytes in the scripts' Work "
                                     "folder (a lower bound when workspace_scan_truncated is "
                                     "1; recomputed at most every 30 s)",
                                     registry=registry)  # fmt: skip
        self.workspace_bytes.set_function(lambda: float(self.workspace.measure()[0]))
        self.workspace_truncated = Gauge(p + "workspace_scan_truncated", "1 when the last "
                                         "workspace_bytes stopped at its entry limit",
                                         registry=registry)  # fmt: skip
        self.workspace_truncated.set_function(lambda: float(self.workspace.measure()[1]))
        self.heartbeat_seconds = Gauge(p + "heartbeat_timestamp_seconds", "when the event "
                                       "loop last turned (Unix time; /livez checks it)",
                                       registry=registry)  # fmt: skip
        self.ready = Gauge(p + "ready", "1 while the agent listens or holds a polling "
                           "connection, and is not stopping", registry=registry)  # fmt: skip
        self.ready.set_function(lambda: 0.0 if self.not_ready() else 1.0)
        self.heartbeat = Heartbeat(home / HEARTBEAT_FILE if home else None, self.heartbeat_seconds)
        # set by the daemon (agent.daemon.run_agent): what /readyz answers from
        self.listening = False
        self.polls = False
        self.stopping = False

    def not_ready(self) -> str | None:
        """Why the agent cannot take work now, or None when it can: it listens, or holds
        at least one polling connection, and is not stopping."""
        if self.stopping:
            return "the agent is stopping"
        if self.listening or self.open_connections["polling"] > 0:
            return None
        if self.polls:
            return "no polling connection is up (the polling servers are not reached yet)"
        return "the agent is not listening yet"

    async def readiness(self) -> str | None:
        """not_ready, as the endpoint's /readyz asks it."""
        return self.not_ready()

    def opened(self, kind: str) -> None:
        """A ``kind`` connection (listening or polling) exchanged its hello."""
        self.open_connections[kind] = self.open_connections.get(kind, 0) + 1
        self.connections_opened.labels(kind).inc()
        self.connections.labels(kind).inc()

    def closed(self, kind: str, *, silent: bool) -> None:
        """A ``kind`` connection closed; ``silent``: because its peer sent no heartbeat."""
        self.open_connections[kind] -= 1
        self.connections.labels(kind).dec()
        if silent:
            self.heartbeat_misses.labels(kind).inc()

    def call_labels(self, service: str, method: str, known: bool) -> tuple[str, str]:
        """The (service, method) labels of a call: a name the agent does not serve is
        ``other``, so that a peer sending garbage names cannot grow the scrape."""
        return (service, method) if known else (OTHER, OTHER)


class WorkspaceSize:
    """The bytes under ``folder``: a bounded walk (WORKSPACE_SCAN_LIMIT entries), its
    result reused for WORKSPACE_SCAN_REUSE seconds. ``clock`` is injectable for tests."""

    def __init__(
        self,
        folder: Path | None,
        limit: int = WORKSPACE_SCAN_LIMIT,
        reuse: float = WORKSPACE_SCAN_REUSE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = folder
        self.limit = limit
        self.reuse = reuse
        self._clock = clock
        self._last: tuple[float, tuple[int, bool]] | None = None

    def measure(self) -> tuple[int, bool]:
        """(bytes, truncated): truncated when the walk stopped at its limit."""
        now = self._clock()
        if self._last is not None and now - self._last[0] < self.reuse:
            return self._last[1]
        result = (0, False) if self.folder is None else _bounded_size(self.folder, self.limit)
        self._last = (now, result)
        return result


def _bounded_size(folder: Path, limit: int) -> tuple[int, bool]:
    """Bytes of regular files under ``folder``, visiting at most ``limit`` entries;
    symbolic links are not followed, vanished entries (a workspace removed meanwhile)
    are skipped."""
    total, seen, pending = 0, 0, [str(folder)]
    while pending:
        try:
            entries: Iterable[os.DirEntry[str]] = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if seen > limit:
                return total, True
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total, False


def _free_bytes(path: Path | None) -> float:
    if path is None:
        return float("nan")
    try:
        return float(shutil.disk_usage(path).free)
    except OSError:
        return float("nan")  # the home is gone: say "unknown", not 0 (a full disk)


# -- the hub ----------------------------------------------------------------------

HEALTH_STATUSES = ("Healthy", "HasWarnings", "Unhealthy", "Unavailable", "Unknown")
HEALTH_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class HubMetrics:
    """Everything a hub counts. The gauges read from the store (workers by health
    status, tasks by state, the queue) are set by ``agent.observability.hub_probe``
    just before each scrape."""

    def __init__(self, task_states: Iterable[str], task_cap: int) -> None:
        self.registry = registry = CollectorRegistry()
        p = "tentacle_hub_"
        Info(p + "build", "the hub's version", registry=registry).info({"version": __version__})
        self.task_states = tuple(task_states)
        self.workers = Gauge(p + "workers", "enabled workers, by health status", ["status"],
                             registry=registry)  # fmt: skip
        for status in (*HEALTH_STATUSES, OTHER):
            self.workers.labels(status)
        self.tasks = Gauge(p + "tasks", "server tasks, by state", ["state"], registry=registry)
        for state in self.task_states:
            self.tasks.labels(state)
        self.task_queue_length = Gauge(p + "task_queue_length", "tasks queued (waiting for "
                                       "room under the cap)", registry=registry)  # fmt: skip
        self.task_cap = Gauge(p + "task_cap", "tasks this node runs at once (TaskCap)",
                              registry=registry)  # fmt: skip
        self.task_cap.set(task_cap)
        self.health_check_seconds = Histogram(
            p + "health_check_duration_seconds", "how long a health-check task took",
            buckets=HEALTH_BUCKETS, registry=registry,
        )  # fmt: skip
        self.heartbeat_seconds = Gauge(p + "heartbeat_timestamp_seconds", "when the event "
                                       "loop last turned (Unix time; /livez checks it)",
                                       registry=registry)  # fmt: skip
        self.ready = Gauge(p + "ready", "1 while the hub serves and its store answers",
                           registry=registry)  # fmt: skip

    def set_workers(self, counts: dict[str, int]) -> None:
        """Workers by health status; a status outside HEALTH_STATUSES counts as other."""
        totals = dict.fromkeys((*HEALTH_STATUSES, OTHER), 0)
        for status, number in counts.items():
            totals[status if status in totals else OTHER] += number
        for status, number in totals.items():
            self.workers.labels(status).set(number)

    def set_tasks(self, counts: dict[str, int], queued: str) -> None:
        """Tasks by state (only the known states: the store's own list) and the queue."""
        for state in self.task_states:
            self.tasks.labels(state).set(counts.get(state, 0))
        self.task_queue_length.set(counts.get(queued, 0))
