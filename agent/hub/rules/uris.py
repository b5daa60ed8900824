"""A listening worker's address, ``https://HOST:PORT/``, checked part by part.

A pattern let through ports 0 and 99999, ``https://[::1/`` and a host with a
second port (``https://127.0.0.1:99:18934/``): the hub would store what it can
never dial. Pure functions: the API and ``register-worker`` refuse alike.
"""

from __future__ import annotations

import ipaddress
import re

LISTENING_FORM = "https://HOST:PORT/ (HOST a DNS name, an IPv4 address or [IPv6]; PORT 1-65535)"
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")  # fullmatch: "$" lets "\n" in
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits only: int() takes full-width ones and "+1"


class BadUri(ValueError):
    """What is wrong with an address, in words a 422 or a CLI line can show."""


def uri_host(host: str) -> str:
    """``host`` as it is written in a URI: a DNS name or IPv4 address as given, an IPv6
    address in brackets (given with or without them). BadUri says what is wrong."""
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in inner:
        try:
            return f"[{ipaddress.IPv6Address(inner).compressed}]"
        except ValueError:
            if inner == host and host.count(":") == 1:  # HOST:PORT, where a host was wanted
                raise BadUri(f"{host!r} is not a host: it has a port") from None
            raise BadUri(f"{host!r} is not an IPv6 address") from None
    if inner != host:
        raise BadUri(f"{host!r}: only an IPv6 address goes in brackets")
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if labels[-1].isdigit():  # all digits: an IPv4 address or nothing (RFC 3696 §2)
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise BadUri(f"{host!r} is not an IPv4 address") from None
        return host
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise BadUri(
            f"{host!r} is not a host name (letters, digits and '-' in dot-separated parts)"
        )
    return host


def check_listening_uri(uri: str) -> None:
    """BadUri unless ``uri`` is exactly ``https://HOST:PORT`` with an optional ``/``:
    no user, path, query or fragment, and a port from 1 to 65535."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() != "https":
        raise BadUri("it must start with https://")
    authority, _, after = rest.partition("/")
    if after or any(c in authority for c in "?#@"):
        raise BadUri("it must have no user, path, query or fragment")
    if authority.startswith("["):
        host, bracket, port_part = authority.partition("]")
        host, port_part = host + bracket, port_part.removeprefix(":")
        if not bracket:
            raise BadUri(f"{authority!r} is not an IPv6 address in brackets: no ']'")
        if not authority[len(host) :].startswith(":"):
            raise BadUri("it must have a port after the host")
    else:
        host, colon, port_part = authority.rpartition(":")
        if not colon:
            raise BadUri("it must have a port after the host")
        if ":" in host:
            uri_host(host)  # says what it is if it is not an IPv6 address ("it has a port")
            raise BadUri(f"{host!r}: an IPv6 address goes in brackets")
    if not _PORT.fullmatch(port_part) or not 1 <= int(port_part) <= 65535:
        raise BadUri(f"the port must be from 1 to 65535, not {port_part!r}")
    uri_host(host)


def listening_uri_problem(uri: str) -> str | None:
    """The 422's words for a listening worker's ``Endpoint.Uri``, or None if it is good."""
    try:
        check_listening_uri(uri)
    except BadUri as error:
        return f"Endpoint.Uri must be {LISTENING_FORM}, not {uri!r}: {error}"
    return None
