"""The admin's journey through the dashboard in a real browser (chromium), against the real app,
a real worker process and a real receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import SCREENSHOTS, Live, wait_until
from tests.receiver import reset, respond
from tests.verify import verify_both

CONSOLE: list[str] = []  # everything the pages logged: CSP violations, script errors
EMAIL = "owner@example.com"
PASSWORD = "a long owner password"


@pytest.fixture(scope="module")
def page(browser: Browser, live: Live) -> Iterator[Page]:
    context = browser.new_context(
        base_url=live.url, viewport={"width": 1280, "height": 860}, locale="en-GB"
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())  # the confirmations say yes
    tab.on("console", lambda m: CONSOLE.append(f"{m.type}: {m.text} [{tab.url} {m.location}]"))
    tab.on("pageerror", lambda error: CONSOLE.append(f"pageerror: {error}"))
    yield tab
    context.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def stay_on_page(page: Page) -> None:
    """Mark the document: the mark survives only if nothing reloads the page."""
    page.evaluate("window.__heraldMark = 'still here'")


def page_was_not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.__heraldMark === 'still here'"))


def test_it_creates_the_owner_and_signs_in_and_out(page: Page) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/setup$"))
    expect(page.get_by_role("heading", name="Create the owner account")).to_be_visible()
    shot(page, "01-setup")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account and sign in").click()
    expect(page).to_have_url(re.compile(r"/webhooks$"))
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    shot(page, "02-webhooks-empty")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/setup")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()  # setup is gone
    page.goto("/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    # htmx focuses the swapped page's autofocus field (the password, after an error): wait for
    # it, or typing could start in one field and land in another.
    expect(page.get_by_label("Password")).to_be_focused()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Remember me").check()
    shot(page, "03-login")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/webhooks$"))
    cookies = {c["name"] for c in page.context.cookies()}
    assert "remember_token" in cookies


def test_it_adds_event_types_and_an_api_key(page: Page, live: Live) -> None:
    page.get_by_role("link", name="Event types").click()
    expect(page.get_by_role("heading", name="Event types")).to_be_visible()
    for name, description in [
        ("user.created", "A user signed up"),
        ("user.deleted", "A user closed their account"),
        ("team.created", "A team was made"),
    ]:
        page.get_by_label("Name").fill(name)
        page.get_by_label("Description").fill(description)
        page.get_by_role("button", name="Add event type").click()
        expect(page.locator(f'[id="event-type-{name}"]')).to_be_visible()
    shot(page, "04-event-types")

    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    page.get_by_label("Name").fill("billing-service")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key-value").inner_text()
    assert key.startswith("hk_")
    page.locator("#copy-new-key").click()
    expect(page.locator("#copy-new-key")).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == key
    shot(page, "05-api-keys")
    live.env["API_KEY"] = key


def test_it_creates_a_webhook_reveals_copies_and_activates_it(page: Page, live: Live) -> None:
    page.get_by_role("link", name="Webhooks").first.click()
    page.get_by_role("link", name="Add your first webhook").click()
    expect(page.get_by_role("heading", name="Add a webhook")).to_be_visible()
    page.get_by_label("Endpoint URL").fill("not a url")
    page.get_by_role("button", name="Create webhook").click()
    expect(page.locator("#url-error")).to_contain_text("http or https URL")
    expect(page.locator("#events-error")).to_be_visible()
    page.get_by_label("Endpoint URL").fill(live.receiver.url_for("/orders"))
    page.get_by_label("Description").fill("Orders service")
    page.get_by_label("user.created").check()
    page.get_by_label("team.created").check()
    shot(page, "06-new-webhook")
    page.get_by_role("button", name="Create webhook").click()
    expect(page).to_have_url(re.compile(r"/webhooks/wh_[0-9a-z]+$"))
    expect(page.locator("#wh-status")).to_have_text("pending")

    secret = page.locator("#wh-secret")
    expect(secret).to_be_hidden()
    page.locator("#reveal-secret").click()
    expect(secret).to_be_visible()
    expect(secret).to_have_text(re.compile(r"^whsec_"))
    page.locator("#copy-secret").click()
    expect(page.locator("#copy-secret")).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret.inner_text()
    live.env["SECRET"] = secret.inner_text()
    live.env["WEBHOOK_URL"] = page.url

    shot(page, "07a-webhook-pending")
    stay_on_page(page)
    page.get_by_role("button", name="Activate").click()
    expect(page.locator("#test-result")).to_contain_text("HTTP 200")
    expect(page.locator("#test-result")).to_contain_text("now active")
    expect(page.locator("#wh-status")).to_have_text("active")
    expect(page.locator("#activate-panel")).to_be_hidden()
    expect(page.get_by_role("button", name="Disable")).to_be_visible()
    shot(page, "07b-activated")
    expect(page.locator("#attempt-rows tr")).to_have_count(1)  # the test event, live
    assert page_was_not_reloaded(page)
    [test_request] = live.receiver.requests_for("/orders")
    verify_both(live.env["SECRET"], test_request.body, test_request.headers)


def test_it_shows_a_published_event_in_the_live_log_without_a_reload(
    page: Page, live: Live
) -> None:
    stay_on_page(page)
    expect(page.locator("#live-indicator")).not_to_have_class(re.compile("is-off"))
    r = requests.post(
        f"{live.url}/v1/events",
        json={"type": "user.created", "data": {"id": "u_42", "email": "ada@example.com"}},
        headers={"Authorization": f"Bearer {live.env['API_KEY']}"},
        timeout=10,
    )
    assert r.status_code == 202, r.text
    row = page.locator("#attempt-rows tr").first
    expect(row).to_contain_text("user.created", timeout=5_000)
    expect(row).to_contain_text("Succeeded")
    expect(page.locator("#attempt-rows tr")).to_have_count(2)
    assert page_was_not_reloaded(page)
    delivered = live.receiver.requests_for("/orders")[-1]
    body = verify_both(live.env["SECRET"], delivered.body, delivered.headers)
    assert body["data"] == {"id": "u_42", "email": "ada@example.com"}
    page.reload()  # let the page's chart and counters include it for the screenshot
    expect(page.locator("#health svg .bar-success").first).to_be_visible()
    expect(page.locator("#attempt-rows tr")).to_have_count(2)
    expect(page.locator("#stat-attempts")).to_have_text("2")
    shot(page, "07-webhook")

    row = page.locator("#attempt-rows tr").first
    row.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/attempts/att_"))
    expect(page.get_by_role("heading", name="Request")).to_be_visible()
    expect(page.locator("main")).to_have_count(1)  # the page replaced, not stacked
    expect(page.locator("#attempt-log")).to_have_count(0)
    expect(page.locator("#request-body")).to_contain_text('"u_42"')
    expect(page.get_by_role("rowheader", name="webhook-signature")).to_be_visible()
    shot(page, "08-attempt-success")


def test_it_shows_a_failing_receivers_error_and_resends(page: Page, live: Live) -> None:
    live.receiver.behave("/flaky", *([reset()] * 5), respond(200, b"thanks"))
    r = requests.post(
        f"{live.url}/v1/webhooks",
        json={
            "url": live.receiver.url_for("/flaky"),
            "events": ["user.deleted"],
            "description": "Flaky CRM",
        },
        headers={"Authorization": f"Bearer {live.env['API_KEY']}"},
        timeout=10,
    )
    hook: dict[str, Any] = r.json()
    requests.post(
        f"{live.url}/v1/events",
        json={"type": "user.deleted", "data": {"id": "u_7"}},
        headers={"Authorization": f"Bearer {live.env['API_KEY']}"},
        timeout=10,
    )
    wait_until(lambda: len(live.receiver.requests_for("/flaky")) >= 5)
    # The worker records the fifth failure (and disables) just after the receiver saw it.
    wait_until(
        lambda: (
            requests.get(
                f"{live.url}/v1/webhooks/{hook['id']}",
                headers={"Authorization": f"Bearer {live.env['API_KEY']}"},
                timeout=10,
            ).json()["status"]
            == "disabled"
        )
    )
    page.goto(f"/webhooks/{hook['id']}")
    expect(page.locator("#wh-status")).to_have_text("disabled", timeout=10_000)
    expect(page.locator(".callout")).to_contain_text("failed all 5 attempts")
    failed = page.locator("#attempt-rows tr").first
    expect(failed).to_contain_text("Failed")
    expect(failed).to_contain_text("no response")
    page.get_by_role("button", name="Enable").click()
    expect(page.locator("#wh-status")).to_have_text("active")
    page.locator("#attempt-rows tr").first.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/attempts/att_"))
    expect(page.locator("#attempt-error")).not_to_be_empty()
    error_text = page.locator("#attempt-error").inner_text()
    assert "reset" in error_text.lower() or "connection" in error_text.lower(), error_text
    shot(page, "09-attempt-failure")
    page.get_by_role("button", name="Resend").click()
    expect(page.locator(".flash-success")).to_contain_text("Resending now")
    first = page.locator("#attempt-rows tr").first
    expect(first).to_contain_text("Succeeded", timeout=10_000)  # arrives live
    expect(first).to_contain_text("manual")

    page.get_by_role("link", name="Webhooks").first.click()
    expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
    expect(page.locator("tbody tr")).to_have_count(2)
    shot(page, "10-webhooks")


def test_it_rotates_the_secret_and_disables_the_webhook(page: Page, live: Live) -> None:
    page.goto(live.env["WEBHOOK_URL"])
    page.locator("#rotate-button").click()
    expect(page.locator(".flash-success")).to_contain_text("old one keeps working for 24 hours")
    expect(page.locator(".secret-note")).to_contain_text("previous secret still signs too")
    page.locator("#reveal-secret").click()
    new_secret = page.locator("#wh-secret").inner_text()
    assert new_secret.startswith("whsec_")
    assert new_secret != live.env["SECRET"]

    before = len(live.receiver.requests_for("/orders"))
    page.get_by_role("button", name="Send test").click()
    expect(page.locator("#test-result")).to_contain_text("HTTP 200")
    wait_until(lambda: len(live.receiver.requests_for("/orders")) > before)
    signed = live.receiver.requests_for("/orders")[-1]
    verify_both(new_secret, signed.body, signed.headers)  # both secrets sign in the grace
    verify_both(live.env["SECRET"], signed.body, signed.headers)

    page.get_by_role("button", name="Disable").click()
    expect(page.locator("#wh-status")).to_have_text("disabled")
    expect(page.get_by_role("button", name="Enable")).to_be_visible()


def test_it_switches_to_github_style_signatures(page: Page, live: Live) -> None:
    page.goto(live.env["WEBHOOK_URL"])
    page.locator("#signature-scheme summary").click()
    page.get_by_label("Also a hex HMAC header").check()
    page.get_by_role("textbox", name="Header", exact=True).fill("X-Hub-Signature-256")
    page.get_by_role("textbox", name="Prefix").fill("sha256=")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".flash-success")).to_contain_text("Saved")
    expect(page.locator("#wh-scheme")).to_contain_text("X-Hub-Signature-256: sha256=<hex>")

    before = len(live.receiver.requests_for("/orders"))
    page.get_by_role("button", name="Send test").click()
    expect(page.locator("#test-result")).to_contain_text("HTTP 200")
    wait_until(lambda: len(live.receiver.requests_for("/orders")) > before)
    signed = live.receiver.requests_for("/orders")[-1]
    # Still in the rotation's grace: the one-value header keeps the old secret (API.md).
    old = live.env["SECRET"].encode()
    expected = "sha256=" + hmac.new(old, signed.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signed.headers["x-hub-signature-256"], expected)


def test_it_deletes_a_webhook(page: Page) -> None:
    page.get_by_role("link", name="Webhooks").first.click()
    page.locator("tbody tr", has_text="Flaky CRM").get_by_role("link").click()
    expect(page.get_by_role("heading", name=re.compile("flaky"))).to_be_visible()
    page.locator("#delete-button").click()
    expect(page).to_have_url(re.compile(r"/webhooks$"))
    expect(page.locator(".flash-success")).to_contain_text("Deleted the webhook")
    expect(page.locator("tbody tr")).to_have_count(1)


def test_it_lists_events_and_their_deliveries(page: Page) -> None:
    page.get_by_role("link", name="Events").first.click()
    expect(page.get_by_role("heading", name="Events")).to_be_visible()
    expect(page.locator("#event-results tbody tr").first).to_be_visible()
    shot(page, "11-events")
    page.locator("#event-results tbody tr", has_text="user.created").first.get_by_role(
        "link"
    ).first.click()
    expect(page.locator("#deliveries")).to_contain_text("succeeded")
    shot(page, "12-event")
    payload = json.loads(page.locator("#event-payload").inner_text())
    assert payload["type"] == "user.created"


def test_it_fits_a_phone(page: Page, live: Live) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        page.goto(live.env["WEBHOOK_URL"])
        expect(page.locator("#wh-status")).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways ({width} px)"
        shot(page, "13-webhook-phone")
    finally:
        page.set_viewport_size({"width": 1280, "height": 860})


def test_it_broke_no_content_security_policy_rule_and_threw_nothing(page: Page) -> None:
    problems = [
        line
        for line in CONSOLE
        if "Content Security Policy" in line
        or (
            line.startswith(("pageerror", "error"))
            # The journey's wrong password (401), bad form (422) and gone setup page (404) are on
            # purpose; the browser logs their responses as failed loads.
            and not re.search(r"Failed to load resource: .* (401|404|422) ", line)
        )
    ]
    assert problems == [], "\n".join(problems)
