"""A listening worker's address, as the API and register-worker check it."""

from __future__ import annotations

import pytest

from agent.hub.rules.uris import BadUri, check_listening_uri, listening_uri_problem, uri_host


@pytest.mark.parametrize(
    "uri",
    [
        "https://127.0.0.1:10933/",
        "https://127.0.0.1:10933",
        "https://[::1]:1/",
        "https://[2001:db8::5]:65535/",
        "https://worker-1.example.com:10933/",
        "https://worker.:10933/",
        "HTTPS://W1:10933/",
    ],
)
def test_a_good_listening_uri_passes(uri: str) -> None:
    assert listening_uri_problem(uri) is None


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("https://127.0.0.1:0/", "from 1 to 65535, not '0'"),
        ("https://127.0.0.1:99999/", "from 1 to 65535, not '99999'"),
        ("https://127.0.0.1:\uff11/", "from 1 to 65535"),  # a full-width 1
        ("https://127.0.0.1:+1/", "from 1 to 65535"),
        ("https://127.0.0.1:1\n", "from 1 to 65535"),
        ("https://h\n:1/", "not a host name"),
        ("https://[::1/", "'[::1' is not an IPv6 address in brackets: no ']'"),
        ("https://[::1]/", "must have a port"),
        ("https://[::1]x:1/", "must have a port"),
        ("https://[::g]:1/", "not an IPv6 address"),
        ("https://127.0.0.1:99:18934/", "'127.0.0.1:99' is not a host: it has a port"),
        ("https://::1:1/", "an IPv6 address goes in brackets"),
        ("https://127.0.0.1/", "must have a port"),
        ("https://127.0.0.999:1/", "not an IPv4 address"),
        ("https://-bad.example:1/", "not a host name"),
        ("https://a_b:1/", "not a host name"),
        ("https://:1/", "not a host name"),
        ("https://[127.0.0.1]:1/", "only an IPv6 address goes in brackets"),
        ("https://user@h:1/", "no user, path, query or fragment"),
        ("https://h:1/path", "no user, path, query or fragment"),
        ("https://h:1/?q", "no user, path, query or fragment"),
        ("https://h:1?q", "no user, path, query or fragment"),
        ("https://h:1#f", "no user, path, query or fragment"),
        ("http://h:1/", "must start with https://"),
        ("h:1", "must start with https://"),
    ],
)
def test_a_bad_listening_uri_names_what_is_wrong_and_the_form(uri: str, why: str) -> None:
    problem = listening_uri_problem(uri)
    assert problem is not None
    assert problem.startswith("Endpoint.Uri must be https://HOST:PORT/")
    assert why in problem, problem


def test_a_host_is_written_as_a_uri_needs_it() -> None:
    assert uri_host("::1") == "[::1]"
    assert uri_host("[::1]") == "[::1]"
    assert uri_host("worker-1") == "worker-1"
    with pytest.raises(BadUri, match="'127.0.0.1:99' is not a host: it has a port"):
        uri_host("127.0.0.1:99")
    with pytest.raises(BadUri, match="not an IPv6 address"):
        uri_host("1:2:3")
    with pytest.raises(BadUri):
        check_listening_uri("https://h:1:2/")
