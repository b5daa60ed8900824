"""Variables files, the environment, output variables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.calamari.variables import VariablesError, VariableSet, load_variables


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "variables.json"
    path.write_text(json.dumps(document))
    return path


def test_a_variables_file_with_sensitive_values(tmp_path: Path) -> None:
    path = write(tmp_path, [
        {"name": "Greeting", "value": "Hello #{Name}"},
        {"name": "Name", "value": "World"},
        {"name": "Password", "value": "s3cret", "sensitive": True},
        {"k": "Calamari.Style", "v": "kvs", "s": False},
        {"name": "Nothing", "value": None},
        {"name": "Count", "value": 3},
    ])  # fmt: skip
    variables = load_variables(path)
    assert variables.get("greeting") == "Hello World"
    assert variables.raw("Greeting") == "Hello #{Name}"
    assert variables.get("Calamari.Style") == "kvs"
    assert variables.get("Count") == "3"
    assert variables.get("Nothing") is None
    assert variables.get("Undefined", "fallback") == "fallback"
    assert variables.sensitive_values() == {"s3cret"}


def test_flags_read_like_dotnet_booleans() -> None:
    variables = VariableSet()
    for name, value in (("A", "True"), ("B", "false"), ("C", "yes"), ("D", "#{A}")):
        variables.set(name, value)
    assert [variables.flag(n, default=None) for n in "ABCDE"] == [True, False, None, True, None]  # type: ignore[arg-type]


def test_the_environment_and_output_variables() -> None:
    variables = VariableSet().with_environment({"HOME": "/home/x"})
    assert variables.get("env:HOME") == "/home/x"
    variables.set("Octopus.Action.Name", "Deploy web")
    variables.set("Octopus.Machine.Name", "web-01")
    names = variables.set_output("Version", "1.2.3", sensitive=True)
    assert names == ["Version", "Octopus.Action[Deploy web].Output.Version",
                     "Octopus.Action[Deploy web].Output[web-01].Version"]  # fmt: skip
    assert variables.get("Octopus.Action[Deploy web].Output.Version") == "1.2.3"
    assert "1.2.3" in variables.sensitive_values()


@pytest.mark.parametrize(("content", "message"), [
    (b"IV__0123456789abcdef....", "is encrypted .*: a password is needed"),
    (b"{not json", "is not JSON"),
    (b'"a string"', "expected a JSON list"),
    (b"[1]", "entry 0 is not an object"),
    (b'[{"value": "x"}]', "entry 0 has no name"),
    (b'[{"name": "x", "value": {"nested": 1}}]', "x: the value must be text"),
    (b'[{"name": "x", "sensitive": "yes"}]', "sensitive must be true or false"),
])  # fmt: skip
def test_bad_files_are_named_with_what_is_wrong(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "vars.json"
    path.write_bytes(content)
    with pytest.raises(VariablesError, match=message) as raised:
        load_variables(path)
    assert str(path) in str(raised.value)
    with pytest.raises(VariablesError, match="cannot read"):
        load_variables(tmp_path / "missing.json")


def encrypt(plain: bytes, password: str) -> bytes:
    """Calamari's encrypted format, made with an independent AES (cryptography)."""
    import os

    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from agent.calamari.variables import encryption_key

    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(encryption_key(password)), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    return b"IV__" + iv + ciphertext


def test_an_encrypted_variables_file(tmp_path: Path) -> None:
    document = [{"name": f"Var{n}", "value": "é" * n, "sensitive": n % 2 == 0} for n in range(40)]
    path = tmp_path / "variables.secret"
    path.write_bytes(encrypt(json.dumps(document).encode(), "open sesame"))
    variables = load_variables(path, "open sesame")
    assert variables.get("Var39") == "é" * 39
    assert len(variables) == 40
    with pytest.raises(VariablesError, match="wrong password"):
        load_variables(path, "not it")
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(VariablesError, match="not a valid encrypted file"):
        load_variables(path, "open sesame")
