"""Adding an SSH worker from the workers view, in a real browser, against a real hub
and a real OpenSSH server on loopback (tests/helpers/sshd.py; as root, as CI runs):
the fingerprint fetched through the hub and confirmed, a worker logging in with a
password and one with an encrypted key read from a file in the browser, both Healthy;
the hub's errors beside the form (nothing half-added left); no secret in the URL,
the page's storage or the hub's log; a ReadOnly key sees no add button."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from agent.hub.keys import Permission
from tests.browser.webhub import WebHub, sign_in
from tests.helpers.sshd import SshServer


@pytest.fixture(scope="module")
def sshd() -> Iterator[SshServer]:
    server = SshServer().start()
    yield server
    server.close()


def open_form(page: Page, hub: WebHub, *, signed_in: bool = False) -> None:
    if signed_in:
        page.goto(f"{hub.url}/app/#/workers")
    else:
        sign_in(page, hub, path="#/workers")
    page.locator("[data-test=action-new-ssh]").click()
    expect(page).to_have_url(f"{hub.url}/app/#/workers/new-ssh")


def fill_target(page: Page, name: str, host: str, port: int, username: str) -> None:
    page.locator("[data-test=field-Name]").fill(name)
    page.locator("[data-test=field-Host]").fill(host)
    page.locator("[data-test=field-Port]").fill(str(port))
    page.locator("[data-test=field-Username]").fill(username)


def fetch_and_confirm(page: Page, sshd: SshServer) -> None:
    page.locator("[data-test=fetch-fingerprint]").click()
    expect(page.locator("[data-test=field-Fingerprint]")).to_have_value(sshd.fingerprint)
    expect(page.locator("[data-test=fingerprint-message]")).to_contain_text(sshd.fingerprint)
    page.locator("[data-test=field-FingerprintChecked]").check()


def healthy(page: Page, name: str) -> None:
    row = page.locator(f"[data-test=worker-row][data-name='{name}']")
    expect(row.locator(".badge").first).to_have_attribute("data-status", "Healthy")
    expect(row).to_contain_text("SSH")


def test_ssh_workers_are_added_with_a_password_and_a_key_and_turn_healthy(
    page: Page, bare_hub: WebHub, sshd: SshServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert sshd.encrypted_key is not None
    assert sshd.encrypted_key.passphrase is not None
    open_form(page, bare_hub)
    fill_target(page, "ssh-password", "127.0.0.1", sshd.port, sshd.user)
    page.locator("[data-test=fetch-fingerprint]").click()
    expect(page.locator("[data-test=field-Fingerprint]")).to_have_value(sshd.fingerprint)
    page.locator("[data-test=field-Password]").fill(sshd.password)
    page.locator("[data-test=form-submit]").click()  # not confirmed yet: refused by the page
    refused = page.locator("[data-test=form-error]")
    expect(refused).to_contain_text("I have checked this fingerprint")
    assert bare_hub.get("/api/accounts/all") == []
    page.locator("[data-test=field-FingerprintChecked]").check()
    page.locator("[data-test=form-submit]").click()
    expect(page).to_have_url(f"{bare_hub.url}/app/#/workers")
    healthy(page, "ssh-password")

    open_form(page, bare_hub, signed_in=True)
    fill_target(page, "ssh-key", "127.0.0.1", sshd.port, sshd.user)
    fetch_and_confirm(page, sshd)
    page.locator("[data-test=login-key]").check()
    page.locator("[data-test=field-PrivateKeyFile]").set_input_files(sshd.folder / "id_encrypted")
    expect(page.locator("[data-test=field-PrivateKey]")).to_have_value(sshd.encrypted_key.private)
    page.locator("[data-test=field-Passphrase]").fill(sshd.encrypted_key.passphrase)
    page.locator("[data-test=form-submit]").click()
    expect(page).to_have_url(f"{bare_hub.url}/app/#/workers")
    healthy(page, "ssh-key")

    accounts = {a["Name"]: a for a in bare_hub.get("/api/accounts/all")}
    assert accounts["ssh-password"]["AccountType"] == "UsernamePassword"
    assert accounts["ssh-key"]["AccountType"] == "SshKeyPair"
    assert accounts["ssh-key"]["PrivateKeyPassphrase"] == {"HasValue": True, "NewValue": None}
    workers = {w["Name"]: w for w in bare_hub.get("/api/workers/all")}
    assert workers["ssh-key"]["Endpoint"]["Fingerprint"] == sshd.fingerprint
    assert workers["ssh-key"]["WorkerPoolIds"] == ["WorkerPools-1"]

    # the secrets typed went nowhere but the two requests
    key_line = sshd.encrypted_key.private.splitlines()[1]
    secrets = [sshd.password, sshd.encrypted_key.passphrase, key_line]
    stored = page.evaluate(
        """() => JSON.stringify([Object.entries(sessionStorage), Object.entries(localStorage),
            location.href, history.length])"""
    )
    for text in secrets:
        assert text not in stored, "a secret is in the page's storage or URL"
        assert text not in caplog.text, "a secret is in the hub's log"
        assert text not in page.url


def test_the_hubs_errors_show_beside_the_form_and_nothing_is_half_added(
    page: Page, bare_hub: WebHub, sshd: SshServer
) -> None:
    open_form(page, bare_hub)
    fill_target(page, "ssh-wrong", "127.0.0.1", 1, sshd.user)
    page.locator("[data-test=fetch-fingerprint]").click()
    expect(page.locator("[data-test=fingerprint-error]")).to_contain_text(
        "cannot read the SSH host key of 127.0.0.1:1"
    )

    # a host of the wrong form: the account is made, the worker refused, the account deleted
    page.locator("[data-test=field-Host]").fill("-x")
    page.locator("[data-test=field-Fingerprint]").fill(sshd.fingerprint)  # pasted
    page.locator("[data-test=field-FingerprintChecked]").check()
    page.locator("[data-test=field-Password]").fill(sshd.password)
    page.locator("[data-test=form-submit]").click()
    error = page.locator("[data-test=form-error]")
    expect(error).to_contain_text("The hub did not save this")
    expect(error).to_contain_text("Endpoint.Host: expected a host name or an IP address")
    expect(page).to_have_url(f"{bare_hub.url}/app/#/workers/new-ssh")
    assert [a["Name"] for a in bare_hub.get("/api/accounts/all")].count("ssh-wrong") == 0
    assert all(w["Name"] != "ssh-wrong" for w in bare_hub.get("/api/workers/all"))


def test_a_read_only_key_sees_no_add_button(page: Page, bare_hub: WebHub) -> None:
    viewer = bare_hub.key("ssh-viewer", Permission.READ_ONLY)
    sign_in(page, bare_hub, viewer, path="#/workers")
    expect(page.locator("[data-test=worker-groups]")).to_be_visible()
    expect(page.locator("[data-test=permission]")).to_have_text("read only")
    assert page.locator("[data-test=action-new-ssh]").count() == 0
    assert page.locator(".action").count() == 0
    page.goto(f"{bare_hub.url}/app/#/workers/new-ssh")
    expect(page.locator("[data-test=page-error]")).to_contain_text("read only")
    assert page.locator(".action").count() == 0
