"""A throwaway OpenSSH server for the SSH workers' tests.

``SshServer.start()`` runs ``/usr/sbin/sshd -D -e -f <config>`` on a free
127.0.0.1 port with an ed25519 host key, a config and an account it generates
(no system sshd or config is touched): a user ``tentacle-ssh-<pid>`` made with
``useradd`` (the tests run as root, as CI does), logging in with a key (plain or
encrypted) or a password (set with ``chpasswd``). A second port of the same
server gives the same user a PATH without ``python3`` (``Match LocalPort`` +
``SetEnv``), for the targets that lack it. ``restart()`` stops the server and
every session it serves (their connections drop) and starts it again on the
same port with the same host key. Readiness is the port answering the SSH
banner, within a bound; never a sleep.

Needs Debian's ``openssh-server`` (.ci/system-deps); without it, or without
root, the tests that ask for it fail saying so.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

SSHD = "/usr/sbin/sshd"
USER_PREFIX = "tentacle-ssh-"
_SERVERS = itertools.count(1)  # numbers the servers of this process
READY_TIMEOUT = 30.0
PASSWORD = "Correct-Horse-7-battery"  # a throwaway account's, on loopback
PASSPHRASE = "open sesame 42"  # the encrypted key's


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(*command: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def _remove_stale_users() -> None:
    """Accounts an earlier session (killed before its cleanup) left behind."""
    for entry in pwd.getpwall():
        name = entry.pw_name
        pid = name.removeprefix(USER_PREFIX).split("-")[0]
        if name.startswith(USER_PREFIX) and pid.isdigit() and not psutil.pid_exists(int(pid)):
            subprocess.run(["userdel", "-r", "-f", name], capture_output=True, check=False)


def _is_sshd(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return process.name() == "sshd"
    return False


@dataclass(frozen=True)
class KeyPair:
    """A client key: ``private`` is the OpenSSH text (encrypted with ``passphrase``)."""

    private: str
    public: str
    passphrase: str | None = None


class SshServer:
    """See the module's docstring. ``port`` serves the user with the usual PATH,
    ``port_without_python`` with a PATH lacking python3, ``port_without_bash`` one
    lacking python3 and bash (a minimal target: steps run under sh)."""

    def __init__(self, shell: str = "/bin/sh") -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the SSH tests run sshd and make a user: they need root")
        if not Path(SSHD).exists():
            raise RuntimeError(
                f"{SSHD} is missing: apt-get install openssh-server (.ci/system-deps)"
            )
        self.folder = Path(tempfile.mkdtemp(prefix="tentacle-sshd-"))
        self.folder.chmod(0o755)
        self.port = _free_port()
        self.port_without_python = _free_port()
        self.port_without_bash = _free_port()  # neither bash nor python3 on its PATH
        self.host = "127.0.0.1"
        # one user per server: two servers of one test process (the SSH tests' and the
        # hub's) shared tentacle-ssh-<pid>, and the second's start deleted the first's
        self.user = f"{USER_PREFIX}{os.getpid()}-{next(_SERVERS)}"
        self.password = PASSWORD
        self.log = self.folder / "sshd.log"
        self.host_key = self.folder / "ssh_host_ed25519_key"
        self.process: subprocess.Popen[bytes] | None = None
        self.key: KeyPair | None = None
        self.encrypted_key: KeyPair | None = None
        self.home = Path("/nonexistent")
        self.shell = shell  # the user's login shell

    # -- set up --------------------------------------------------------------

    def start(self) -> SshServer:
        """Make the host key, the user, the keys and the config; start sshd."""
        _remove_stale_users()
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key))
        self._make_user()
        self.key = self._client_key("id_plain", None)
        self.encrypted_key = self._client_key("id_encrypted", PASSPHRASE)
        authorized = self.folder / "authorized_keys"
        authorized.write_text(self.key.public + self.encrypted_key.public)
        authorized.chmod(0o644)
        self._without_python()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        self._write_config(authorized)
        self.resume()
        return self

    def _make_user(self) -> None:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(self.user)
            subprocess.run(["userdel", "-r", "-f", self.user], capture_output=True, check=False)
        _run("useradd", "--create-home", "--shell", self.shell, self.user)
        _run("chpasswd", stdin=f"{self.user}:{self.password}\n")
        self.home = Path(pwd.getpwnam(self.user).pw_dir)

    def _client_key(self, name: str, passphrase: str | None) -> KeyPair:
        path = self.folder / name
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase or "", "-f", str(path))
        return KeyPair(path.read_text(), (self.folder / f"{name}.pub").read_text(), passphrase)

    def _without_python(self) -> None:
        """Bin folders of links to every command of /usr/bin and /bin but python's (and
        but bash's too)."""
        self.path_without_python = self._bin_folder("bin-without-python", ("python",))
        self.path_without_bash = self._bin_folder("bin-without-bash", ("python", "bash"))

    def _bin_folder(self, name: str, left_out: tuple[str, ...]) -> str:
        bin_folder = self.folder / name
        bin_folder.mkdir()
        for source in (Path("/usr/bin"), Path("/bin")):
            for entry in source.iterdir():
                link = bin_folder / entry.name
                if entry.name.startswith(left_out) or link.exists() or link.is_symlink():
                    continue
                link.symlink_to(entry)
        return str(bin_folder)

    def _write_config(self, authorized: Path) -> None:
        config = f"""\
ListenAddress {self.host}:{self.port}
ListenAddress {self.host}:{self.port_without_python}
ListenAddress {self.host}:{self.port_without_bash}
HostKey {self.host_key}
PidFile {self.folder / "sshd.pid"}
AuthorizedKeysFile {authorized}
AllowUsers {self.user}
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
StrictModes no
LogLevel VERBOSE
Subsystem sftp internal-sftp
Match LocalPort {self.port_without_python}
    SetEnv PATH={self.path_without_python}
Match LocalPort {self.port_without_bash}
    SetEnv PATH={self.path_without_bash}
"""
        self.config = self.folder / "sshd_config"
        self.config.write_text(config)
        _run(SSHD, "-t", "-f", str(self.config))

    # -- life cycle ----------------------------------------------------------

    def resume(self) -> None:
        """Start sshd (same port, same host key) and wait for its banner on both ports."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log
            )
        for port in (self.port, self.port_without_python, self.port_without_bash):
            self._wait_for_banner(port)

    def _wait_for_banner(self, port: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no attempt"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"sshd exited ({self.process.returncode}): {self.log_text()}")
            try:
                with socket.create_connection((self.host, port), timeout=2) as probe:
                    probe.settimeout(2)
                    if probe.recv(64).startswith(b"SSH-"):
                        return
            except OSError as error:
                last = str(error)
            time.sleep(0.02)  # a bounded poll of a port, not a guess at how long it takes
        raise RuntimeError(f"sshd did not answer on port {port} within {READY_TIMEOUT} s: {last}")

    def sessions(self) -> list[psutil.Process]:
        """The per-connection sshd processes of this server (not the commands they run,
        which outlive a dropped connection, as on any machine)."""
        if self.process is None or self.process.poll() is not None:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(self.process.pid).children(recursive=True)
            return [child for child in children if _is_sshd(child)]
        return []

    def stop(self) -> None:
        """Stop sshd and every session it serves: their connections drop."""
        if self.process is None:
            return
        sessions = self.sessions()
        self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for session in sessions:
            with contextlib.suppress(psutil.NoSuchProcess):
                session.kill()
        psutil.wait_procs(sessions, timeout=10)
        self.process = None

    def user_processes(self) -> list[psutil.Process]:
        """The processes running as the test user (its steps, their children)."""
        try:
            uid = pwd.getpwnam(self.user).pw_uid
        except KeyError:  # never made (a server not started), or already removed
            return []
        found = []
        for process in psutil.process_iter(["uids"]):
            with contextlib.suppress(psutil.Error):
                if process.info["uids"] and process.info["uids"].real == uid:
                    found.append(process)
        return found

    def kill_user_processes(self) -> None:
        processes = self.user_processes()
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(processes, timeout=10)

    def restart(self) -> None:
        """``stop`` then ``resume``: same port, same host key, the sessions gone."""
        self.stop()
        self.resume()

    def close(self) -> None:
        """Stop the server, end what the user still runs (steps a test left behind),
        remove the user (and its home) and the folder."""
        self.stop()
        self.kill_user_processes()
        subprocess.run(["userdel", "-r", "-f", self.user], capture_output=True, check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- facts ---------------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """The host key's SHA256 fingerprint, as ``ssh-keygen -lf`` prints it."""
        line = _run("ssh-keygen", "-lf", f"{self.host_key}.pub")
        match = re.search(r"SHA256:[A-Za-z0-9+/]+", line)
        if match is None:
            raise RuntimeError(f"ssh-keygen -lf printed no SHA256 fingerprint: {line!r}")
        return match.group(0)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def logins(self) -> int:
        """How many logins the server accepted so far (its log's ``Accepted`` lines):
        the number of SSH connections that were opened and authenticated."""
        return len(re.findall(r"^Accepted \S+ for ", self.log_text(), re.MULTILINE))
