"""The test helper's own contract: sshd starts, both logins work, a restart keeps the
host key and drops the sessions, the second port's PATH lacks python3."""

from __future__ import annotations

import asyncssh

from agent.client.ssh import host_fingerprint
from tests.helpers.sshd import SshServer


async def _run(sshd: SshServer, command: str, port: int | None = None, **login: object) -> str:
    async with asyncssh.connect(
        sshd.host,
        port or sshd.port,
        username=sshd.user,
        known_hosts=None,
        agent_path=None,
        config=None,
        **login,
    ) as connection:
        done = await connection.run(command, check=True)
        return str(done.stdout)


async def test_key_and_password_logins_work_and_a_restart_keeps_the_host_key(
    sshd: SshServer,
) -> None:
    assert sshd.key is not None
    assert sshd.encrypted_key is not None
    key = asyncssh.import_private_key(sshd.key.private)
    assert (await _run(sshd, "id -un", client_keys=[key])).strip() == sshd.user
    assert (await _run(sshd, "id -un", password=sshd.password, client_keys=[])).strip() == (
        sshd.user
    )
    encrypted = asyncssh.import_private_key(
        sshd.encrypted_key.private, sshd.encrypted_key.passphrase
    )
    assert (await _run(sshd, "echo $HOME", client_keys=[encrypted])).strip() == str(sshd.home)

    before = await host_fingerprint(sshd.host, sshd.port)
    assert before == sshd.fingerprint
    logins = sshd.logins()
    assert logins >= 3
    sshd.restart()
    assert await host_fingerprint(sshd.host, sshd.port) == before
    assert (await _run(sshd, "echo again", client_keys=[key])).strip() == "again"
    assert sshd.logins() == logins + 1


async def test_the_second_port_gives_a_path_without_python3(sshd: SshServer) -> None:
    assert sshd.key is not None
    key = asyncssh.import_private_key(sshd.key.private)
    probe = "command -v python3 || echo none; command -v sh"
    lines = (await _run(sshd, probe, port=sshd.port_without_python, client_keys=[key])).split()
    assert lines[0] == "none"
    assert lines[1].endswith("/sh")
    assert (await _run(sshd, "command -v python3", client_keys=[key])).strip()
