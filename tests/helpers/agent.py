"""A real `tentacle agent` process on loopback, and a trusted caller's identity."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from agent import __version__
from agent.certs import Identity, generate_identity, save_identity
from agent.client import AgentClient, Endpoint, PollingListener
from agent.config import InstanceIndex
from agent.config.instances import Instance, create_instance
from agent.transport.settings import ChannelSettings
from tests.helpers.cli import TentacleCli

READY = re.compile(r"Agent listening on: wss://\S+:(\d+)/")
WAIT_BOUND = 60.0  # seconds: how long a line is waited for before the test fails


class AgentProcess:
    """An agent instance ``agent`` that trusts the caller instance ``hub``."""

    def __init__(
        self,
        cli: TentacleCli,
        env: dict[str, str] | None = None,
        verb: str = "agent",
        args: tuple[str, ...] = (),
        caller: Identity | None = None,
        user: tuple[int, int] | None = None,
        python: str = sys.executable,
    ) -> None:
        """``caller``: the hub's identity, to share one among several agents (default: new);
        ``user``: the (uid, gid) the agent runs as, not the test's (root only)."""
        self.user = user
        self.python = python
        self.cli = cli
        self.verb = verb
        self.args = args
        self.env = {**cli.env, **(env or {})}
        index = InstanceIndex(cli.config_home / "instances")
        self.identity = generate_identity()
        self.caller = caller or generate_identity()
        self.instance = self._instance(index, "agent", self.identity)
        self.caller_identity_path = self._instance(index, "hub", self.caller).config.identity_path
        config = self.instance.config.with_settings(port=0, listen_ip="127.0.0.1")
        self.instance = self.instance.save(config.with_trusted(_trust(self.caller)))
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self.listener: PollingListener | None = None  # set when the agent polls the test

    @staticmethod
    def _instance(index: InstanceIndex, name: str, identity: Identity) -> Instance:
        instance = create_instance(index, index.directory.parent, name)
        save_identity(instance.config.identity_path, identity)
        return instance

    @property
    def home(self) -> Path:
        return self.instance.config.home

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    @property
    def thumbprint(self) -> str:
        return self.identity.thumbprint

    def settings(
        self, identity: Identity | None = None, heartbeat: float = 10.0
    ) -> ChannelSettings:
        """Channel settings for a caller: the trusted hub's identity unless another is given."""
        return ChannelSettings(identity or self.caller, "test-caller", __version__,
                               heartbeat_interval=heartbeat)  # fmt: skip

    def client(self) -> AgentClient:
        """A client for this agent as the trusted hub: dialing it, or through its polling."""
        if self.listener is not None:
            endpoint = Endpoint(self.subscription, self.thumbprint)
            return AgentClient.polling(self.listener, endpoint, self.settings())
        return AgentClient(Endpoint(self.url, self.thumbprint), self.settings())

    async def poll_a_listener(self) -> AgentProcess:
        """Make the agent poll a PollingListener that the test runs (``self.listener``)."""
        settings = ChannelSettings(self.caller, "hub", __version__)
        self.listener = PollingListener(settings, [self.identity.certificate_pem.decode()])
        [(host, port), *_] = await self.listener.start("127.0.0.1", 0)
        return self.poll(host, port, self.caller.thumbprint)

    def poll(self, host: str, port: int, server_thumbprint: str) -> AgentProcess:
        """Make the agent a polling-only agent of the server at ``host:port``."""
        from agent.config.polling import PollingServer, new_subscription_id

        config = self.instance.config.with_settings(
            no_listen=True,
            subscription_id=new_subscription_id(),
            polling_servers=(PollingServer.at(host, port, server_thumbprint),),
        )
        self.instance = self.instance.save(config)
        return self

    @property
    def subscription(self) -> str:
        subscription = self.instance.config.subscription_id
        assert subscription is not None
        return subscription

    def start(self) -> AgentProcess:
        """Start the agent and wait for its readiness line."""
        self.process = subprocess.Popen(
            [self.python, "-m", "agent", self.verb, "--instance", "agent", *self.args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            **({} if self.user is None else
               {"user": self.user[0], "group": self.user[1], "extra_groups": []}),
        )  # fmt: skip
        self._log = _Lines(self.process.stderr)
        self._out = _Lines(self.process.stdout)
        if self.instance.config.no_listen:
            self._out.wait_for("Agent will not listen")
            return self
        line = self._out.wait_for("Agent listening on")
        match = READY.search(line)
        assert match, f"unexpected readiness line {line!r}; log:\n{self.log()}"
        self.port = int(match.group(1))
        return self

    def log(self) -> str:
        return "".join(self._log.lines) if self.process else ""

    def wait_for_log(self, text: str, timeout: float = WAIT_BOUND) -> str:
        """Block until a log line containing ``text`` appears; returns it. Fails, with
        the log so far, if none has after ``timeout`` seconds or the log ended."""
        return self._log.wait_for(text, timeout=timeout)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait_exit(self) -> int:
        """Wait (without signalling it) for the agent to exit; returns its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=60)

    def stdout(self) -> str:
        return "".join(self._out.lines) if self.process else ""

    def wait_for_output(self, text: str, timeout: float = WAIT_BOUND) -> str:
        """Block until a stdout line containing ``text`` appears; returns it (fails as
        :meth:`wait_for_log` does)."""
        return self._out.wait_for(text, timeout=timeout)

    async def stopped(self) -> int:
        """``stop`` off the event loop, for async tests: a polling agent says goodbye on
        its connections as it stops, and a listener on the test's loop must be free to
        answer (blocked by ``stop``, the agent waited 30 s for it)."""
        return await asyncio.to_thread(self.stop)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.terminate()
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _trust(identity: Identity) -> tuple:  # type: ignore[type-arg]
    from agent.config import TrustedPeer

    return (TrustedPeer.from_certificate(identity.certificate),)


class _Lines:
    """Collects a child's output lines in a thread; waiting is on a condition, not a clock."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for(self, text: str, start: int = 0, timeout: float = WAIT_BOUND) -> str:
        """The first line from ``start`` on that contains ``text``; fails if output ends,
        or after ``timeout`` seconds (a bound for a hang, not an expectation)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    if text in line:
                        return line
                if self._ended:
                    raise AssertionError(f"output ended without {text!r}:\n{''.join(self.lines)}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"not within {timeout:g} s: a line containing {text!r}; "
                        f"the output so far:\n{''.join(self.lines)}"
                    )
                self._changed.wait(timeout=remaining)
