"""The hub's key and what it seals; the executor's encrypted variables file the hub
writes, read back by the executor's own reader; package names read as it reads them."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agent.calamari.variables import VariablesError, load_variables
from agent.hub.packages import PackageNameError, parse_name
from agent.hub.secrets import (
    KEY_FILE,
    SEALED,
    DeployVariable,
    HubKey,
    SecretError,
    encrypted_variables_file,
    one_time_password,
    opened_variables,
    seal_variables,
    shown_arguments,
)


def test_the_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    first = HubKey.of_home(tmp_path)
    path = tmp_path / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_bytes()) == 32
    token = first.seal("Db", "value")
    assert HubKey.of_home(tmp_path).open("Db", token) == "value"
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary left


def test_a_damaged_key_file_is_refused_saying_what_to_do(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_bytes(b"short")
    with pytest.raises(SecretError, match="restore it from the backup"):
        HubKey.of_home(tmp_path)


def test_a_sealed_value_opens_only_with_its_key_and_name(tmp_path: Path) -> None:
    key = HubKey.of_home(tmp_path)
    other = HubKey(b"\x01" * 32)
    token = key.seal("DbPassword", "s3cret")
    assert "s3cret" not in token
    assert token != key.seal("DbPassword", "s3cret")  # a new nonce each time
    assert key.open("dbpassword", token) == "s3cret"  # names are any case
    with pytest.raises(SecretError, match="cannot be opened with this hub's key"):
        other.open("DbPassword", token)
    with pytest.raises(SecretError, match="cannot be opened"):
        key.open("ApiKey", token)  # moved to another variable
    with pytest.raises(SecretError, match="not sealed by a hub"):
        key.open("DbPassword", "plain")


def test_variables_are_stored_sealed_shown_masked_and_opened(tmp_path: Path) -> None:
    key = HubKey.of_home(tmp_path)
    given = [
        {"Name": "Port", "Value": "80"},
        {"Name": "DbPassword", "Value": "s3cret", "IsSensitive": True},
        {"Name": "Empty", "Value": None, "IsSensitive": True},
    ]
    stored = seal_variables(given, key)
    assert stored[0] == given[0]
    assert stored[1]["Value"] == "********"
    assert "s3cret" not in repr(stored)
    assert seal_variables(stored, key) == stored  # a rerun's are kept as they are
    shown = shown_arguments({"PackageId": "A", "Variables": stored})
    assert [v.get(SEALED) for v in shown["Variables"]] == [None, None, None]
    assert [v["Value"] for v in shown["Variables"]] == ["80", "********", "********"]
    assert SEALED in stored[1]  # showing copies, the stored arguments keep their token
    assert opened_variables(stored, key) == [
        DeployVariable("Port", "80"),
        DeployVariable("DbPassword", "s3cret", True),
        DeployVariable("Empty", "", True),
    ]


def test_the_variables_file_is_the_executors_encrypted_format(tmp_path: Path) -> None:
    password = one_time_password()
    assert len(password) >= 40
    path = tmp_path / "variables.enc"
    variables = [DeployVariable("Port", "80"), DeployVariable("DbPassword", "s3cret", True)]
    path.write_bytes(encrypted_variables_file(variables, password))
    assert path.read_bytes().startswith(b"IV__")
    assert b"s3cret" not in path.read_bytes()
    loaded = load_variables(path, password)
    assert loaded.get("Port") == "80"
    assert loaded.sensitive_values() == {"s3cret"}
    with pytest.raises(VariablesError, match="wrong password"):
        load_variables(path, one_time_password())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Acme.Web.1.2.3.zip", ("Acme.Web", "1.2.3", ".zip")),
        ("Acme.Web.1.2.3-beta.4.tar.gz", ("Acme.Web", "1.2.3-beta.4", ".tar.gz")),
        ("Acme.Web.2.0.0.NUPKG", ("Acme.Web", "2.0.0", ".nupkg")),
        ("Acme@1.0.0@0123abcd.tgz", ("Acme", "1.0.0", ".tgz")),
    ],
)
def test_package_names_are_read_as_the_executor_reads_them(
    name: str, expected: tuple[str, str, str]
) -> None:
    parsed = parse_name(name)
    assert (parsed.package_id, parsed.version, parsed.extension) == expected


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("", "has no name"),
        ("Acme.zip", "expected a name like Id.1.2.3.zip"),
        ("Acme.1.0.exe", "expected one of"),
        ("Ac me.1.0.zip", "must be letters, digits"),
        ("A" * 201 + ".1.0.zip", "longer than 200"),
        ("C:\\packages\\Acme.1.0.zip", "is a path"),
        ("../Acme.1.0.zip", "is a path"),
    ],
)
def test_bad_package_names_say_what_is_wrong(name: str, said: str) -> None:
    with pytest.raises(PackageNameError, match=said):
        parse_name(name)
