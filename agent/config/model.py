"""The instance configuration as a frozen value, and the rules for each setting.

Every setting has one coercion function that accepts what a person or a file
can give (a YAML scalar, an environment string, a flag value) and returns the
typed value or raises ValueError saying what was expected. The file loader,
the environment layer and the command line all go through the same functions,
so a value is judged the same wherever it comes from.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.certs import IDENTITY_FILE_NAME
from agent.config.polling import PollingServer, coerce_polling_servers, coerce_subscription_id
from agent.config.settings import Flag, as_text, as_texts, setting, settings_of, with_settings
from agent.config.trust import TrustedPeer

DEFAULT_PORT = 10933
DEFAULT_POLLING_CONNECTION_COUNT = 2
MAX_POLLING_CONNECTION_COUNT = 512
MAX_PORT = 65535
DEFAULT_SCRIPT_UID_RANGE = (61184, 65519)  # systemd's DynamicUser range
DEFAULT_HEARTBEAT_INTERVAL = 30.0  # as agent.protocol.connection's (config may not import it)

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce_port(value: Any) -> int:
    """A TCP port, 0 to 65535 (0 asks the OS for an ephemeral port)."""
    number = _integer(value)
    if number is None or not 0 <= number <= MAX_PORT:
        raise ValueError(f"expected a port number from 0 to {MAX_PORT}, got {value!r}")
    return number


def coerce_polling_connection_count(value: Any) -> int:
    number = _integer(value)
    if number is None or not 1 <= number <= MAX_POLLING_CONNECTION_COUNT:
        raise ValueError(
            f"expected a whole number from 1 to {MAX_POLLING_CONNECTION_COUNT}, got {value!r}"
        )
    return number


def coerce_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"expected true or false, got {value!r}")


def coerce_listen_ip(value: Any) -> str | None:
    """An IPv4 or IPv6 address; None, empty or "any" means every address."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "any")):
        return None
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValueError(f"expected an IP address or 'any', got {value!r}") from None


def coerce_absolute_path(value: Any) -> Path:
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ValueError(f"expected an absolute path, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ValueError(f"expected an absolute path, got {str(value)!r}")
    return path


def coerce_optional_path(value: Any) -> Path | None:
    return None if value is None else coerce_absolute_path(value)


def coerce_paths(value: Any) -> tuple[Path, ...]:
    """A list of absolute paths (or one path, from the environment: ':'-separated)."""
    if isinstance(value, str):
        value = [part for part in value.split(":") if part]
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of absolute paths, got {value!r}")
    return tuple(dict.fromkeys(coerce_absolute_path(item) for item in value))


def coerce_heartbeat_interval(value: Any) -> float:
    """Seconds between heartbeats; a silent peer is dropped after three."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or not 0.05 <= seconds <= 3600:
        raise ValueError(f"expected seconds from 0.05 to 3600, got {value!r}")
    return seconds


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value.strip())
    return None


def coerce_count(value: Any) -> int:
    """A whole number of 0 or more (0: no limit)."""
    number = _integer(value)
    if number is None or number < 0:
        raise ValueError(f"expected a whole number, 0 for no limit, got {value!r}")
    return number


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def coerce_size(value: Any) -> int:
    """A number of bytes, with an optional K, M, G or T (powers of 1024); 0: no limit."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    text = value.strip().lower().removesuffix("b") if isinstance(value, str) else ""
    unit = text[-1:] if text[-1:] in _SIZE_UNITS else ""
    number = text[: len(text) - len(unit)].strip()
    if not number.isdecimal():
        raise ValueError(f"expected bytes (e.g. 536870912 or 512M), 0 for no limit, got {value!r}")
    return int(number) * _SIZE_UNITS[unit]


def coerce_cpu_weight(value: Any) -> int:
    """A cgroup CPU weight, 1 to 10000 (100 is a process's default); 0: not set."""
    number = _integer(value)
    if number is None or not 0 <= number <= 10000:
        raise ValueError(f"expected a CPU weight from 1 to 10000, 0 for none, got {value!r}")
    return number


def coerce_seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or seconds < 0:
        raise ValueError(f"expected a number of seconds, got {value!r}")
    return seconds


def coerce_optional_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    return value


def coerce_uid_range(value: Any) -> tuple[int, int]:
    """``A-B``: the uids scripts may be given, A to B inclusive, above 0 and below 2^31."""
    if isinstance(value, list | tuple) and len(value) == 2:
        value = f"{value[0]}-{value[1]}"
    first, _, last = str(value).strip().partition("-")
    low, high = _integer(first), _integer(last)
    if low is None or high is None or not 0 < low <= high < 2**31 - 1:
        raise ValueError(
            f"expected a range of uids A-B with 0 < A <= B < 2147483647 (e.g. 61184-65519, "
            f"systemd's DynamicUser range), got {value!r}"
        )
    return low, high


def _uid_range_text(value: tuple[int, int]) -> str:
    return f"{value[0]}-{value[1]}"


def coerce_optional_port(value: Any) -> int | None:
    return None if value is None or value == "" else coerce_port(value)


def _any_address(listen_ip: str | None) -> str:
    return listen_ip or "any"


def _dump_servers(servers: tuple[PollingServer, ...]) -> list[dict[str, str]]:
    return [{"address": server.address, "thumbprint": server.thumbprint} for server in servers]


@dataclass(frozen=True)
class InstanceConfig:
    """One instance's settings, and the table they are declared in (agent.config.settings).

    Build changed copies with :meth:`with_settings`. ``trusted`` is not a
    setting: trust has its own verbs and file form.
    """

    home: Path = setting(
        Path(), coerce_absolute_path, required=True, env="TENTACLE_HOME", shown_as="Home",
        dump=str, help="the instance home: its certificate, files and workspaces",
    )  # fmt: skip
    application_directory: Path | None = setting(
        None, coerce_optional_path, env="TENTACLE_APPLICATION_DIRECTORY",
        flag=Flag("--app", "path", metavar="DIR"), help="where packages are deployed",
        shown_as="ApplicationDirectory", shown_attribute="applications", dump=as_text,
    )  # fmt: skip
    port: int = setting(
        DEFAULT_PORT, coerce_port, env="TENTACLE_SERVICE_PORT",
        flag=Flag("--port", "int", 0, MAX_PORT), help="listening port (0: ephemeral)",
        shown_as="Port",
    )  # fmt: skip
    listen_ip: str | None = setting(
        None, coerce_listen_ip, env="TENTACLE_LISTEN_IP",
        flag=Flag("--listenIpAddress", metavar="IP"), help="address to listen on, or any",
        shown_as="ListenIpAddress", show=_any_address,
    )  # fmt: skip
    no_listen: bool = setting(
        False, coerce_bool, env="TENTACLE_NO_LISTEN", flag=Flag("--noListen", "bool"),
        help="true: do not listen (polling only)", shown_as="NoListen",
    )  # fmt: skip
    polling_connection_count: int = setting(
        DEFAULT_POLLING_CONNECTION_COUNT, coerce_polling_connection_count,
        env="TENTACLE_POLLING_CONNECTION_COUNT",
        flag=Flag("--pollingConnectionCount", "int", 1, MAX_POLLING_CONNECTION_COUNT),
        help="connections to each polling server", shown_as="PollingConnectionCount",
    )  # fmt: skip
    heartbeat_interval: float = setting(
        DEFAULT_HEARTBEAT_INTERVAL, coerce_heartbeat_interval, env="TENTACLE_HEARTBEAT_INTERVAL",
        flag=Flag("--heartbeat-interval", "float", metavar="SECONDS"),
        help="seconds between heartbeats; a peer silent for 3 is dropped",
        shown_as="HeartbeatInterval",
    )  # fmt: skip
    file_roots: tuple[Path, ...] = setting(
        (), coerce_paths, env="TENTACLE_FILE_ROOTS", shown_as="FileRoots", dump=as_texts,
        help="folders besides the home that files may be transferred under (':'-separated)",
    )  # fmt: skip
    max_running_scripts: int = setting(
        0, coerce_count, env="TENTACLE_MAX_RUNNING_SCRIPTS",
        flag=Flag("--max-running-scripts", "int", 0, metavar="N"),
        help="run at most N scripts at once; more queue in order (0: no limit)",
        shown_as="MaxRunningScripts",
    )  # fmt: skip
    workspace_retention: float = setting(
        24 * 3600.0, coerce_seconds, env="TENTACLE_WORKSPACE_CLEANER_DELETE_OLDER_THAN",
        flag=Flag("--workspace-retention", "float", 0, metavar="SECONDS"),
        help="remove workspaces of finished scripts never completed after this long",
        shown_as="WorkspaceRetention",
    )  # fmt: skip
    workspace_sweep_interval: float = setting(
        2 * 3600.0, coerce_seconds, env="TENTACLE_WORKSPACE_CLEANER_DELAY",
        flag=Flag("--workspace-sweep-interval", "float", 0.001, metavar="SECONDS"),
        help="how often old workspaces are looked for", shown_as="WorkspaceSweepInterval",
    )  # fmt: skip
    script_cgroups: bool = setting(
        True, coerce_bool, env="TENTACLE_SCRIPT_CGROUPS", flag=Flag("--script-cgroups", "bool"),
        help="false: no cgroup per script even where possible (a cancel reaches its session only)",
        shown_as="ScriptCgroups",
    )  # fmt: skip
    script_memory_max: int = setting(
        0, coerce_size, env="TENTACLE_SCRIPT_MEMORY_MAX",
        flag=Flag("--script-memory-max", metavar="BYTES"),
        help="memory a script may use, e.g. 512M (cgroups; 0: no limit; a call asks for less)",
        shown_as="ScriptMemoryMax",
    )  # fmt: skip
    script_pids_max: int = setting(
        0, coerce_count, env="TENTACLE_SCRIPT_PIDS_MAX",
        flag=Flag("--script-pids-max", "int", 0, metavar="N"),
        help="processes a script may have at once (cgroups; 0: no limit; a call asks for fewer)",
        shown_as="ScriptPidsMax",
    )  # fmt: skip
    script_cpu_weight: int = setting(
        0, coerce_cpu_weight, env="TENTACLE_SCRIPT_CPU_WEIGHT",
        flag=Flag("--script-cpu-weight", "int", 0, 10000, metavar="W"),
        help="a script's CPU weight, 1 to 10000, 100 the default (cgroups; 0: not set)",
        shown_as="ScriptCpuWeight",
    )  # fmt: skip
    script_users: bool = setting(
        True, coerce_bool, env="TENTACLE_SCRIPT_USERS", flag=Flag("--script-users", "bool"),
        help="on: scripts run as their isolation group's uid (needs root); off: the operator "
        "accepts one user (the agent's) for all scripts", shown_as="ScriptUsers",
    )  # fmt: skip
    script_uid_range: tuple[int, int] = setting(
        DEFAULT_SCRIPT_UID_RANGE, coerce_uid_range, env="TENTACLE_SCRIPT_UID_RANGE",
        flag=Flag("--script-uid-range", metavar="A-B"), dump=_uid_range_text,
        help="the uids scripts' isolation groups are given, A to B (no account may use them)",
        shown_as="ScriptUidRange",
    )  # fmt: skip
    # Set by server-comms and polling-proxy, shown by show-configuration in their own form.
    subscription_id: str | None = setting(None, coerce_subscription_id)
    polling_servers: tuple[PollingServer, ...] = setting(
        (), coerce_polling_servers, dump=_dump_servers
    )
    polling_proxy_host: str | None = setting(None, coerce_optional_text)
    polling_proxy_port: int | None = setting(None, coerce_optional_port)
    polling_proxy_username: str | None = setting(None, coerce_optional_text)
    polling_proxy_password: str | None = setting(None, coerce_optional_text, secret=True)
    trusted: tuple[TrustedPeer, ...] = field(default=())

    @property
    def applications(self) -> Path:
        """Where deployed packages go: the configured folder or ``<home>/Applications``."""
        return self.application_directory or self.home / "Applications"

    @property
    def identity_path(self) -> Path:
        return self.home / IDENTITY_FILE_NAME

    @property
    def trusted_certificates(self) -> tuple[TrustedPeer, ...]:
        """The trusted peers whose certificates are known (pending ones excluded)."""
        return tuple(peer for peer in self.trusted if not peer.is_pending)

    def with_settings(self, **values: Any) -> InstanceConfig:
        """A copy with the named settings coerced and replaced.

        Raises ValueError naming the setting if a value is invalid, KeyError for
        an unknown setting name.
        """
        return with_settings(self, values)

    def with_trusted(self, peers: tuple[TrustedPeer, ...]) -> InstanceConfig:
        return replace(self, trusted=peers)


INSTANCE_SETTINGS = settings_of(InstanceConfig)  # the table, in the file's order
