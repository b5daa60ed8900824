"""Tentacle's container variables, read into what the entrypoint does: pure, no I/O.

The container image's entrypoint (``tentacle container-start``) is configured as
Octopus's Tentacle image is, by environment variables with Tentacle's names
(docs: README "In a container"). This module turns a mapping of them into a
:class:`ContainerSettings` or a :class:`VariableError` whose one line names the
variable and what was expected; the caller hands ``os.environ`` in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.errors import TentacleError
from agent.hub.rules.names import control_character_problem
from agent.hub.rules.uris import BadUri, uri_host

# what the agent process must not inherit: the key registers once, then is forgotten
SECRET_VARIABLES = ("ServerApiKey", "ServerPassword", "BearerToken", "TENTACLE_API_KEY")
# Tentacle's image has them; this hub has neither deployment targets nor user logins
UNSUPPORTED = {
    "TargetEnvironment": "deployment targets are not supported, only workers: set TargetWorkerPool",
    "TargetRole": "deployment targets are not supported, only workers: set TargetWorkerPool",
    "TargetTenant": "tenants are not supported: leave it unset",
    "TargetTenantTag": "tenants are not supported: leave it unset",
    "ServerUsername": "log-in by user name is not supported: set ServerApiKey instead",
    "ServerPassword": "log-in by password is not supported: set ServerApiKey instead",
    "BearerToken": "bearer tokens are not supported: set ServerApiKey instead",
}
HOST_CHOICES = ("ComputerName", "FQDN", "Custom", "PublicIp")
DEFAULT_SPACE = "Default"


class VariableError(TentacleError):
    """A container variable is missing or malformed: restarting will not mend it."""


@dataclass(frozen=True)
class ContainerSettings:
    """What the variables ask for. ``polling``: the agent dials the hub at
    ``hub_comms_host`` (port ``polling_port``, None for the one the hub reports);
    otherwise the hub dials ``public_host`` at ``listening_port`` (None: the
    instance's own port). ``space`` is a name or id; ``policy`` None for the
    hub's default."""

    server_url: str
    api_key: str
    server_thumbprint: str | None
    pools: tuple[str, ...]
    name: str
    polling: bool
    hub_comms_host: str
    polling_port: int | None
    listening_port: int | None
    public_host: str
    policy: str | None
    space: str

    @property
    def style(self) -> str:
        return "TentacleActive" if self.polling else "TentaclePassive"


def settings_from(
    environ: Mapping[str, str],
    computer_name: Callable[[], str],
    fqdn: Callable[[], str],
) -> ContainerSettings:
    """The settings the variables in ``environ`` ask for; VariableError for the first
    variable that is missing, malformed or unsupported. ``computer_name`` and
    ``fqdn`` are asked only when a default needs them."""
    variables = {key: value.strip() for key, value in environ.items()}
    for variable, why in UNSUPPORTED.items():
        if variables.get(variable):
            raise VariableError(f"{variable}: {why}")
    server_url, server_host = _server_url(variables.get("ServerUrl", ""))
    comms_host, polling_port, polling = _polling(variables, server_host)
    listening_port = _port(variables, "ListeningPort")
    if polling and listening_port is not None:
        raise VariableError(
            "ListeningPort: set, but ServerCommsAddress/ServerPort make this a polling "
            "worker, which listens on no port: set one or the other"
        )
    return ContainerSettings(
        server_url=server_url,
        api_key=_api_key(variables.get("ServerApiKey", "")),
        server_thumbprint=_thumbprint(variables.get("ServerThumbprint", "")),
        pools=_pools(variables.get("TargetWorkerPool", "")),
        name=_name(variables.get("TargetName", ""), computer_name),
        polling=polling,
        hub_comms_host=comms_host,
        polling_port=polling_port,
        listening_port=listening_port,
        public_host="" if polling else _public_host(variables, computer_name, fqdn),
        policy=variables.get("MachinePolicy") or None,
        space=variables.get("Space") or DEFAULT_SPACE,
    )


def _server_url(text: str) -> tuple[str, str]:
    """(the URL, its host); the hub's API is HTTP(S) at a host."""
    expected = "expected the hub's URL, e.g. https://hub.example:8065/"
    if not text:
        raise VariableError(f"ServerUrl: not set; {expected}")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise VariableError(f"ServerUrl: {text!r} is not an http(s) URL with a host; {expected}")
    try:
        parts.port  # noqa: B018 (a malformed port raises only when it is read)
    except ValueError:
        raise VariableError(f"ServerUrl: {text!r} has a malformed port; {expected}") from None
    return text, parts.hostname


def _api_key(key: str) -> str:
    if not key:
        raise VariableError("ServerApiKey: not set; expected an API key of the hub (API-...)")
    if not all(c.isascii() and (c.isalnum() or c == "-") for c in key):
        # never the key itself in the message: it is a secret
        raise VariableError(
            "ServerApiKey: expected API- followed by letters and digits; this one holds "
            "a space or another character a key never has"
        )
    return key


def _thumbprint(text: str) -> str | None:
    if not text:
        return None
    digits = text.replace(":", "")
    if len(digits) not in (40, 64) or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise VariableError(
            f"ServerThumbprint: {text!r} is not a thumbprint; expected the hub's SHA-1 "
            "(40 hex digits) or SHA-256 (64), as `tentacle hub show-thumbprint` prints it"
        )
    return digits.upper()


def _pools(text: str) -> tuple[str, ...]:
    pools = tuple(part.strip() for part in text.split(","))
    if not text or not all(pools):
        raise VariableError(
            f"TargetWorkerPool: {'not set' if not text else repr(text) + ' has an empty name'}; "
            "expected one or more worker pools (names or ids), separated by commas"
        )
    return pools


def _name(text: str, computer_name: Callable[[], str]) -> str:
    name = text or computer_name()
    if problem := control_character_problem(name):
        raise VariableError(f"TargetName: must not contain {problem}")
    return name


def _port(variables: Mapping[str, str], variable: str) -> int | None:
    text = variables.get(variable, "")
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise VariableError(f"{variable}: {text!r} is not a port; expected 1 to 65535")
    return int(text)


def _polling(variables: Mapping[str, str], server_host: str) -> tuple[str, int | None, bool]:
    """(the host the agent dials, its port or None, whether it polls): either
    ServerCommsAddress or ServerPort makes a polling worker, as in Tentacle's image."""
    port = _port(variables, "ServerPort")
    address = variables.get("ServerCommsAddress", "")
    if not address:
        return server_host, port, port is not None
    expected = "expected the hub's polling address, e.g. https://hub.example:10943"
    parts = urlsplit(address if "://" in address else f"https://{address}")
    try:
        address_port = parts.port
    except ValueError:
        raise VariableError(
            f"ServerCommsAddress: {address!r} has a malformed port; {expected}"
        ) from None
    if parts.scheme not in ("https", "wss") or not parts.hostname or parts.path not in ("", "/"):
        raise VariableError(f"ServerCommsAddress: {address!r} is not a host and port; {expected}")
    if port is not None and address_port is not None and port != address_port:
        raise VariableError(
            f"ServerPort: {port} contradicts ServerCommsAddress's port {address_port}: "
            "set the port in one of them"
        )
    return parts.hostname, address_port or port, True


def _public_host(
    variables: Mapping[str, str], computer_name: Callable[[], str], fqdn: Callable[[], str]
) -> str:
    """The host a listening worker is dialled at, as Tentacle's image picks it."""
    custom = variables.get("CustomPublicHostName", "")
    given = variables.get("PublicHostNameConfiguration", "")
    choice = next((c for c in HOST_CHOICES if c.lower() == given.lower()), None)
    if given and choice is None:
        raise VariableError(
            f"PublicHostNameConfiguration: {given!r}; expected one of {', '.join(HOST_CHOICES)}"
        )
    if choice is None:
        choice = "Custom" if custom else "ComputerName"
    if choice == "PublicIp":
        raise VariableError(
            "PublicHostNameConfiguration: PublicIp asks an outside service for this "
            "machine's address, which this entrypoint does not do: use Custom with "
            "CustomPublicHostName"
        )
    if custom and choice != "Custom":
        raise VariableError(
            f"CustomPublicHostName: set, but PublicHostNameConfiguration is {choice}: "
            "set PublicHostNameConfiguration=Custom, or leave CustomPublicHostName unset"
        )
    if choice == "Custom" and not custom:
        raise VariableError(
            "CustomPublicHostName: not set; PublicHostNameConfiguration=Custom needs the "
            "host name or address the hub dials"
        )
    host = {"Custom": lambda: custom, "FQDN": fqdn}.get(choice, computer_name)()
    variable = "CustomPublicHostName" if choice == "Custom" else "PublicHostNameConfiguration"
    try:
        return uri_host(host)
    except BadUri as error:
        raise VariableError(
            f"{variable}: {error}; expected a DNS name or an IP address "
            "(the port the hub dials goes in ListeningPort)"
        ) from None
