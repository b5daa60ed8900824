"""SshConnections against a real OpenSSH server: logins, the pinned host key, one
connection carrying many steps, a restarted sshd."""

from __future__ import annotations

import asyncio
import re
import signal

import pytest

from agent.client import (
    ConnectionLost,
    HostKeyMismatch,
    ScriptRequest,
    SshConnections,
    SshCredentials,
    SshLoginFailed,
    host_fingerprint,
)
from tests.helpers.sshd import SshServer
from tests.integration.ssh.conftest import Output, all_at_once, key_login, target_of

OTHER = "SHA256:" + "A" * 43


async def _whoami(connections: SshConnections, sshd: SshServer, login: SshCredentials) -> str:
    output = Output()
    worker = connections.worker(target_of(sshd), login)
    outcome = await worker.execute(ScriptRequest(body="id -un"), output)
    assert outcome.exit_code == 0
    return output.lines()[0]


async def test_key_password_and_encrypted_key_logins(
    sshd: SshServer, connections: SshConnections
) -> None:
    assert sshd.encrypted_key is not None
    assert await host_fingerprint(sshd.host, sshd.port) == sshd.fingerprint
    assert await _whoami(connections, sshd, key_login(sshd)) == sshd.user
    await connections.close()
    password = SshCredentials(sshd.user, password=sshd.password)
    assert await _whoami(connections, sshd, password) == sshd.user
    await connections.close()
    encrypted = SshCredentials(
        sshd.user, private_key=sshd.encrypted_key.private, passphrase=sshd.encrypted_key.passphrase
    )
    assert await _whoami(connections, sshd, encrypted) == sshd.user

    wrong = SshCredentials(sshd.user, private_key=sshd.encrypted_key.private, passphrase="nope")
    with pytest.raises(SshLoginFailed, match="wrong or missing passphrase"):
        await _whoami(connections, sshd, wrong)
    missing = SshCredentials(sshd.user, private_key=sshd.encrypted_key.private)
    with pytest.raises(SshLoginFailed, match="no passphrase was given"):
        await _whoami(connections, sshd, missing)
    bad_password = SshCredentials(sshd.user, password="not it")
    with pytest.raises(SshLoginFailed, match=f"refused the login of {sshd.user}"):
        await _whoami(connections, sshd, bad_password)


async def test_a_wrong_fingerprint_is_refused_naming_both_before_authenticating(
    sshd: SshServer, connections: SshConnections
) -> None:
    logins = sshd.logins()
    worker = connections.worker(target_of(sshd, fingerprint=OTHER), key_login(sshd))
    with pytest.raises(HostKeyMismatch) as raised:
        await worker.execute(ScriptRequest(body="touch never-run"), Output())
    assert raised.value.expected == OTHER
    assert raised.value.presented == sshd.fingerprint
    assert OTHER in str(raised.value)
    assert sshd.fingerprint in str(raised.value)
    assert sshd.logins() == logins  # no authentication was attempted, nothing ran
    assert "never-run" not in sshd.log_text()
    assert not (sshd.home / ".tentacle").joinpath("Work").exists() or not any(
        (sshd.home / ".tentacle" / "Work").rglob("never-run")
    )


async def test_concurrent_steps_share_one_connection(
    sshd: SshServer, connections: SshConnections
) -> None:
    worker = connections.worker(target_of(sshd), key_login(sshd))
    await worker.capabilities()  # the connection is open
    logins = sshd.logins()
    steps = 6
    outputs = await all_at_once(worker, steps, f"{sshd.home}/barrier-{id(worker)}")
    assert [o.lines() for o in outputs] == [[str(n)] for n in range(steps)]
    assert sshd.logins() == logins  # no new connection: one carried them all
    assert worker.link.opened == 1


async def test_sshd_restarted_mid_step_is_a_lost_connection_and_the_next_step_reconnects(
    sshd: SshServer, connections: SshConnections
) -> None:
    worker = connections.worker(target_of(sshd), key_login(sshd))
    output = Output()
    # (a mutex of its own: a script left running holds its mutex, as on an agent)
    request = ScriptRequest(body="echo started; sleep 3004; echo never", mutex_name="orphan")
    run = asyncio.ensure_future(worker.execute(request, output))
    await output.wait_for("started")
    logins = sshd.logins()
    sshd.restart()
    with pytest.raises(ConnectionLost, match="outcome is unknown") as raised:
        await run
    assert "not a failure of the script" in str(raised.value)
    after = Output()
    outcome = await worker.execute(ScriptRequest(body="echo again"), after)
    assert outcome.exit_code == 0
    assert after.lines() == ["again"]
    assert sshd.logins() == logins + 1
    assert worker.link.opened == 2

    # the same ticket again (a hub re-attaching) does not start it twice
    with pytest.raises(ConnectionLost, match="started before .* still running"):
        await worker.execute(request, Output())
    await worker.cancel(request.ticket)
    outcome = await worker.execute(request, Output())
    assert outcome.already_finished
    assert outcome.exit_code == 128 + signal.SIGTERM
    assert len(re.findall("echo never", sshd.log_text())) == 0
