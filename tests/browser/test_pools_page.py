"""Worker pools and machine policies in a real browser: created, edited, and the
hub's 422 shown beside the form (nothing saved)."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.webhub import WebHub, sign_in


def pool_named(hub: WebHub, name: str) -> dict[str, object] | None:
    return next((p for p in hub.get("/api/workerpools/all") if p["Name"] == name), None)


def test_a_pool_is_created_then_edited(page: Page, bare_hub: WebHub) -> None:
    sign_in(page, bare_hub, path="#/pools")
    page.locator("[data-test=action-new-pool]").click()
    page.locator("[data-test=field-Name]").fill("Build agents")
    page.locator("[data-test=field-Description]").fill("Linux machines that build")
    page.locator("[data-test=form-submit]").click()
    created = page.locator("[data-test=pool-row][data-name='Build agents']")
    expect(created).to_contain_text("Linux machines that build")
    pool = pool_named(bare_hub, "Build agents")
    assert pool is not None
    assert pool["Description"] == "Linux machines that build"

    created.locator("[data-test=action-edit]").click()
    expect(page.locator("[data-test=field-Name]")).to_have_value("Build agents")
    page.locator("[data-test=field-Name]").fill("Builders")
    page.locator("[data-test=field-SortOrder]").fill("7")
    page.locator("[data-test=form-submit]").click()
    expect(page.locator("[data-test=pool-row][data-name='Builders']")).to_be_visible()
    edited = bare_hub.get(f"/api/workerpools/{pool['Id']}")
    assert (edited["Name"], edited["SortOrder"]) == ("Builders", 7), edited


def test_a_pool_without_a_name_shows_the_hubs_422(page: Page, bare_hub: WebHub) -> None:
    before = len(bare_hub.get("/api/workerpools/all"))
    sign_in(page, bare_hub, path="#/pools/new")
    page.locator("[data-test=field-Description]").fill("no name given")
    page.locator("[data-test=form-submit]").click()
    error = page.locator("[data-test=form-error]")
    expect(error).to_contain_text("Name is required")
    expect(page.locator("[data-test=field-Description]")).to_have_value("no name given")
    assert len(bare_hub.get("/api/workerpools/all")) == before


def test_a_policy_is_created_edited_and_a_bad_interval_refused(
    page: Page, bare_hub: WebHub
) -> None:
    sign_in(page, bare_hub, path="#/policies")
    page.locator("[data-test=action-new-policy]").click()
    page.locator("[data-test=field-Name]").fill("Quick checks")
    page.locator("[data-test=field-HealthCheckInterval]").fill("00:00:10")
    page.locator("[data-test=form-submit]").click()
    expect(page.locator("[data-test=form-error]")).to_contain_text(
        "HealthCheckInterval must be at least"
    )
    page.locator("[data-test=field-HealthCheckInterval]").fill("00:05:00")
    page.locator("[data-test=field-MachineConnectivityBehavior]").select_option(
        "MayBeOfflineAndCanBeSkipped"
    )
    page.locator("[data-test=form-submit]").click()
    created = page.locator("[data-test=policy-row][data-name='Quick checks']")
    expect(created).to_contain_text("every 5 minutes")
    expect(created).to_contain_text("May be offline")

    created.locator("[data-test=action-edit]").click()
    page.locator("[data-test=field-FreeDiskSpaceWarningMegabytes]").fill("2048")
    page.locator("[data-test=form-submit]").click()
    expect(created).to_contain_text("below 2048 MB")
    policies = bare_hub.get("/api/machinepolicies/all")
    policy = next(p for p in policies if p["Name"] == "Quick checks")
    assert policy["MachineHealthCheckPolicy"]["HealthCheckInterval"] == "00:05:00", policy
    assert policy["FreeDiskSpaceWarningMegabytes"] == 2048, policy
