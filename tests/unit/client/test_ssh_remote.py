"""The SSH worker's pure parts: the wrapper's answers, paths kept inside the root,
names, fingerprints, masked credentials, the executor bundle's determinism."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from agent.client import SshCredentials
from agent.client.ssh import remote
from agent.client.ssh.types import check_fingerprint
from agent.executor_bundle import executor_bundle


def test_the_wrappers_status_line() -> None:
    assert remote.parse_status("tentacle-ssh started") == ("started", None)
    assert remote.parse_status("tentacle-ssh running") == ("running", None)
    assert remote.parse_status("tentacle-ssh finished 143") == ("finished", 143)
    for bad in ("hello", "tentacle-ssh finished x", "tentacle-ssh done"):
        with pytest.raises(ValueError, match="wrapper"):
            remote.parse_status(bad)


def test_paths_stay_inside_the_root() -> None:
    root = "/home/u/.tentacle"
    assert remote.within(root, "Files/a.zip") == f"{root}/Files/a.zip"
    assert remote.within(root, f"{root}/Work/t/x") == f"{root}/Work/t/x"
    for escaping in ("..", "../x", "/etc/passwd", "Files/../../x", ".", "", "/home/u/.tentacle2/x"):
        assert remote.within(root, escaping) is None, escaping
    assert remote.workspace_name("a/b.txt") == "a/b.txt"
    for bad in ("../x", "/x", ".started", ".script", "."):
        assert remote.workspace_name(bad) is None, bad


def test_names_tickets_and_fingerprints() -> None:
    assert remote.mutex_file("RunningScript") == "RunningScript"
    assert remote.mutex_file("a/b c") == "a%2Fb%20c"
    assert remote.safe_ticket("abc-1.2_3") == "abc-1.2_3"
    with pytest.raises(ValueError, match="cannot name a working folder"):
        remote.safe_ticket("../x")
    good = "SHA256:" + "a" * 43
    assert check_fingerprint(good) == good
    with pytest.raises(ValueError, match="43 base64 characters"):
        check_fingerprint("MD5:aa")


def test_credentials_never_show_their_secrets() -> None:
    shown = repr(SshCredentials("deploy", private_key="KEY", passphrase="PASS", password="PW"))
    assert "deploy" in shown
    for secret in ("KEY", "PASS", "PW"):
        assert secret not in shown.replace("passphrase", "").replace("password", "")


def test_the_environment_and_body_go_in_order_and_quoted() -> None:
    data = remote.wrapper_input({"B": "it's\nmulti", "A": "x"}, "echo hi", "__end__")
    assert data == b"export A=x\nexport B='it'\"'\"'s\nmulti'\n__end__echo hi__end__"
    facts = remote.parse_capabilities(
        "os=Linux\nshells= bash sh python3\nfree_kilobytes=10\npython=\ncpus=2\n"
    )
    assert facts["Shells"] == ["bash", "sh", "python"]
    assert facts["FreeDiskBytes"] == 10240
    assert facts["Python"] is None
    assert (facts["Cpus"], facts["MemoryBytes"], facts["AgentVersion"]) == (2, None, None)


def test_the_bundle_is_deterministic_and_carries_the_executor() -> None:
    bundle = executor_bundle()
    names = zipfile.ZipFile(BytesIO(bundle.data)).namelist()
    assert "__main__.py" in names
    assert "agent/cli/calamari_cmd.py" in names
    assert "agent/calamari/helpers/octopus.sh" in names
    assert "click/__init__.py" in names
    assert "yaml/__init__.py" in names
    assert "ruamel/yaml/main.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyc"))]
    executor_bundle.cache_clear()
    assert executor_bundle().sha256 == bundle.sha256


def test_the_bundle_round_trips_yaml_with_its_own_ruamel(tmp_path: Path) -> None:
    # the target has only python3 (-S: no site-packages): the zipapp's ruamel must import
    archive = tmp_path / "tentacle-calamari.pyz"
    archive.write_bytes(executor_bundle().data)
    target = tmp_path / "settings.yaml"
    target.write_text("port: 80  # kept\n")
    program = (
        "import sys, pathlib; sys.path.insert(0, sys.argv[1]);"
        "from agent.calamari.structured import update_file;"
        "print(update_file(pathlib.Path(sys.argv[2]), {'port': '8080'}, print))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", program, str(archive), str(target)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "YAML\n", "")
    assert target.read_text() == "port: 8080 # kept\n"  # the comment's column where it fits


def test_the_bundle_replaces_xml_with_the_standard_library_only(tmp_path: Path) -> None:
    # XML needs nothing but expat: the zipapp replaces it on a bare python3 (-S)
    archive = tmp_path / "tentacle-calamari.pyz"
    archive.write_bytes(executor_bundle().data)
    target = tmp_path / "web.config"
    target.write_bytes(b'<a>\r\n    <b k="1"/>\r\n</a>\r\n')
    program = (
        "import sys, pathlib; sys.path.insert(0, sys.argv[1]);"
        "from agent.calamari.structured import update_file;"
        "print(update_file(pathlib.Path(sys.argv[2]), {'/a/b/@k': '2'}, print))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", program, str(archive), str(target)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, "XML\n", "")
    assert target.read_bytes() == b'<a>\r\n  <b k="2" />\r\n</a>'


def _wrapper(root: Path, shell: str) -> subprocess.Popen[bytes]:
    """The step wrapper run here as sshd would run it, for the ticket ``t1`` in
    ``root``."""
    (root / "Work" / "t1").mkdir(parents=True, exist_ok=True)
    (root / "Locks").mkdir(exist_ok=True)
    arguments = [str(root), "t1", "full", "RunningScript", "", "10", shell, "__m__"]
    return subprocess.Popen(
        [shell, "-c", remote.WRAPPER, "tentacle", *arguments],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )  # fmt: skip


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_the_wrapper_runs_its_whole_input(tmp_path: Path, shell: str) -> None:
    data = remote.wrapper_input({"X": "\u00e9t\u00e9\0"}, 'echo "ran $X \u00e0"', "__m__")
    wrapper = _wrapper(tmp_path, shell)
    out, err = wrapper.communicate(data, timeout=30)
    assert (wrapper.returncode, err) == (0, b"")
    assert out.decode().splitlines() == ["tentacle-ssh started", "ran \u00e9t\u00e9 \u00e0"]


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_a_wrapper_whose_input_was_cut_short_runs_nothing(tmp_path: Path, shell: str) -> None:
    # the connection dropped while the input came: sshd ends the wrapper's stdin
    data = remote.wrapper_input({}, "touch ran; echo 'ran half'", "__m__")
    wrapper = _wrapper(tmp_path, shell)
    out, err = wrapper.communicate(data[: data.index(b"echo")], timeout=30)
    assert wrapper.returncode == 125
    assert out == b""
    assert b"input was cut short: nothing ran" in err
    assert list((tmp_path / "Work" / "t1").iterdir()) == []  # not started, nothing recorded
