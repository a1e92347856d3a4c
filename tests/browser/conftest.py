import os
from contextlib import contextmanager

import pytest
from playwright.sync_api import sync_playwright

from tests.investigations.workers import console_and_worker
from tests.support import console_env, database_url_of

CHROMIUM = "/usr/bin/chromium"
# Chromium's own background traffic is refused by this machine's closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls
    # (creating users) are still plain synchronous code, so Django's guard is lifted here only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:  # also when the launch fails: later tests (the deploy check) must not inherit it
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@contextmanager
def console_with_worker(lab_credentials, tmp_path_factory, *, model_delay_ms: int = 0, **environment: str):
    """A console on this run's database and the worker that runs its investigations and actions;
    `environment`: more of their settings (a backend's allow-list, say)."""
    from django.db import connection

    env = console_env(
        DATABASE_URL=database_url_of(connection.settings_dict),
        GATEHOUSE_CREDENTIALS_DIR=str(lab_credentials[0]),
        GATEHOUSE_OFFLINE_MODEL_DELAY_MS=str(model_delay_ms),
        GATEHOUSE_SWEEP_INTERVAL_S="3600",
        ANTHROPIC_API_KEY=None,  # the offline model, whatever this shell holds
        **environment,
    )
    with console_and_worker(env, tmp_path_factory.mktemp("worker")) as console:
        yield console


@pytest.fixture(scope="module")
def console(django_db_setup, django_db_blocker, lab_credentials, tmp_path_factory):
    with console_with_worker(lab_credentials, tmp_path_factory) as console:
        yield console


# Runs in every document before the page's own scripts (Playwright's init scripts are not
# subject to the page's CSP): each violation is logged, so it reaches the console listener.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => console.error(
  `CSP violation: ${e.effectiveDirective} refused ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`));
"""


def csp_violations(page) -> list[str]:
    """What the Content-Security-Policy refused on `page` so far (every document it showed)."""
    return page.csp_violations


@contextmanager
def browser_page(browser):
    """A page in a browser context of its own: one person's session.

    Every page of every browser test runs under the console's Content-Security-Policy: anything
    the policy refuses (Chromium's own report or the securitypolicyviolation event) fails the test.
    """
    context = browser.new_context()
    context.add_init_script(script=REPORT_CSP_VIOLATIONS)
    page = context.new_page()
    page.csp_violations = []
    page.on(
        "console",
        lambda message: (
            page.csp_violations.append(message.text)
            if message.type == "error"
            and ("Content Security Policy" in message.text or message.text.startswith("CSP violation"))
            else None
        ),
    )
    page.set_default_timeout(15_000)
    yield page
    violations = list(page.csp_violations)
    context.close()
    assert violations == [], "the Content-Security-Policy refused something"


@pytest.fixture
def page(browser):
    with browser_page(browser) as page:
        yield page


@pytest.fixture
def second_page(browser):
    """Another person's browser, beside `page`."""
    with browser_page(browser) as page:
        yield page


def signed_in(page, console, username: str):
    """`page`, signed in to `console` as `username` (made with the tests' PASSWORD)."""
    from tests.conftest import PASSWORD

    page.goto(f"{console.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector(".topbar nav")
    return page


@pytest.fixture
def sign_in(page, live_console):
    return lambda username: signed_in(page, live_console, username)


def raise_story(page, console, external_id: str) -> int:
    """Raise one of the lab's stories through the alert form (1001 phishing: isolation to approve; 1002
    beaconing; 1003 the travelling manager, nothing to approve); the new investigation's id."""
    import json
    import re
    from datetime import datetime

    from django.utils import timezone

    from toolserver.lab import estate

    story = next(alert for alert in estate.demo_alerts() if alert["external_id"] == external_id)
    observed = timezone.localtime(datetime.fromisoformat(story["observed_at"]))
    page.goto(f"{console.url}/alerts/new/")
    page.fill("#id_title", story["title"])
    page.select_option("#id_severity", story["severity"])
    page.fill("#id_host", story["host"])
    page.fill("#id_user", story["user"])
    page.fill("#id_observed_at", observed.strftime("%Y-%m-%dT%H:%M:%S"))
    page.fill("#id_details", json.dumps(story["details"]))
    page.click("#alert-form button[type=submit]")
    page.wait_for_url(re.compile(r"/investigations/\d+/$"))
    page.wait_for_load_state("load")
    return int(re.search(r"/investigations/(\d+)/$", page.url).group(1))
