"""The step helper against a real OpenSSH server: one helper per connection carries
the steps; a helper that dies fails its steps as lost, keeps their mutex until their
scripts end, and is started again; a target without python3 uses the wrapper."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import psutil
import pytest

from agent.client import ConnectionLost, ScriptRequest, SshConnections
from agent.client.ssh import frames
from agent.client.ssh.helper import StepHelper
from agent.errors import RemoteError
from tests.helpers.eventually import eventually
from tests.helpers.sshd import SshServer
from tests.integration.ssh.conftest import Output, all_at_once, key_login, target_of, waits


def _helpers(sshd: SshServer) -> list[psutil.Process]:
    """The user's step helpers: sshd's children (their keepers are forks of them, and
    outlive them)."""
    found = []
    for process in sshd.user_processes():
        with contextlib.suppress(psutil.Error):
            parent = process.parent()
            if "tentacle-step-helper" in " ".join(process.cmdline()) and (
                parent is not None and parent.name() == "sshd"
            ):
                found.append(process)
    return found


async def test_one_helper_carries_the_steps_and_without_python3_the_wrapper_does(
    sshd: SshServer,
) -> None:
    connections = SshConnections()
    try:
        worker = connections.worker(target_of(sshd), key_login(sshd))
        outputs = [Output() for _ in range(5)]
        requests = [ScriptRequest(body=f"echo {n}", isolation="none") for n in range(5)]
        outcomes = await asyncio.gather(
            *(worker.execute(r, o) for r, o in zip(requests, outputs, strict=True))
        )
        assert [o.exit_code for o in outcomes] == [0] * 5
        assert [o.lines() for o in outputs] == [[str(n)] for n in range(5)]
        helper = worker.link.state["helper"]
        assert isinstance(helper, StepHelper)
        assert helper.alive
        assert len(_helpers(sshd)) == 1
        assert (await worker.execute(ScriptRequest(body="true"), Output())).exit_code == 0
        assert worker.link.state["helper"] is helper
        # the body is no argument (ps shows those to every user), nor in the environment
        output = Output()
        body = 'echo "${TENTACLE_STEP_BODY-unset}"; tr "\\0" " " </proc/$$/cmdline; echo'
        assert (await worker.execute(ScriptRequest(body=body), output)).exit_code == 0
        assert output.lines()[0] == "unset"
        assert "cmdline" not in output.lines()[1]

        bare = connections.worker(target_of(sshd, without_python=True), key_login(sshd))
        output = Output()
        assert (await bare.execute(ScriptRequest(body="echo plain"), output)).exit_code == 0
        assert output.lines() == ["plain"]
        assert bare.link.state.get("no_helper") is True
        assert "helper" not in bare.link.state
    finally:
        await connections.close()


async def test_a_helper_that_dies_loses_its_steps_not_their_mutex_and_starts_again(
    sshd: SshServer,
) -> None:
    connections = SshConnections()
    try:
        worker = connections.worker(target_of(sshd), key_login(sshd))
        gate = sshd.home / "gate-helper"
        ran = sshd.home / "ran-helper"
        output = Output()
        holder = ScriptRequest(
            body=f"echo holding; while [ ! -e {gate} ]; do sleep 0.05; done; exit 7"
        )
        first = asyncio.ensure_future(worker.execute(holder, output))
        await output.wait_for("holding")
        [helper] = _helpers(sshd)
        helper.kill()
        with pytest.raises(ConnectionLost, match="outcome is unknown"):
            await first
        # a new helper on the same connection; the mutex is still the first script's
        second_request = ScriptRequest(body=f"touch {ran}")
        second = asyncio.ensure_future(worker.execute(second_request, Output()))
        await eventually(lambda: waits(sshd, second_request.ticket), "the second step waits")
        [again] = _helpers(sshd)
        assert again.pid != helper.pid
        assert worker.link.opened == 1
        assert not ran.exists()
        gate.touch()
        assert (await second).exit_code == 0
        assert ran.exists()
        # the first script ran to its end and its exit code was recorded
        outcome = await worker.execute(holder, Output())
        assert (outcome.already_finished, outcome.exit_code) == (True, 7)

        # a step cancelled on the new helper: its process group goes
        cancel = asyncio.Event()
        output = Output()
        running = asyncio.ensure_future(
            worker.execute(ScriptRequest(body="echo started; sleep 3010"), output, cancel)
        )
        await output.wait_for("started")
        cancel.set()
        assert (await running).exit_code == 128 + signal.SIGTERM
    finally:
        await connections.close()


async def test_more_steps_at_once_than_sshd_has_sessions_share_the_helper(
    sshd: SshServer,
) -> None:
    connections = SshConnections()
    try:
        worker = connections.worker(target_of(sshd), key_login(sshd))
        steps = 12  # beyond sshd's MaxSessions (10): on the wrapper's way they would queue
        outputs = await all_at_once(worker, steps, f"{sshd.home}/barrier-helper")
        assert [o.lines() for o in outputs] == [[str(n)] for n in range(steps)]
        assert worker.link.opened == 1
    finally:
        await connections.close()


async def test_a_step_larger_than_the_helper_takes_is_the_callers_error_and_the_next_runs(
    sshd: SshServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    connections = SshConnections()
    try:
        worker = connections.worker(target_of(sshd), key_login(sshd))
        assert (await worker.execute(ScriptRequest(body="true"), Output())).exit_code == 0
        monkeypatch.setattr(frames, "LIMIT", 4096)  # not 64 MiB of body in a test
        with pytest.raises(RemoteError) as refused:
            await worker.execute(ScriptRequest(body="echo " + "x" * 5000), Output())
        assert refused.value.kind == "bad_params"
        assert "the step helper takes up to 4096" in str(refused.value)
        assert "writable" not in str(refused.value)  # not the target's folder's fault
        output = Output()
        assert (await worker.execute(ScriptRequest(body="echo next"), output)).exit_code == 0
        assert output.lines() == ["next"]
    finally:
        await connections.close()
