import pytest

from core.roles import ADMIN, ANALYST, MANAGER
from tests.browser.conftest import csp_violations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    "role, expected",
    [
        (ANALYST, ["Overview", "Investigations", "Approvals", "New alert", "Audit trail", "Account"]),
        (MANAGER, ["Overview", "Investigations", "Approvals", "Audit trail", "Account"]),
        (ADMIN, ["Overview", "Audit trail", "Tool servers", "People", "Administration", "Lab", "Account"]),
    ],
)
def test_each_role_signs_in_and_sees_its_navigation(make_user, sign_in, role, expected):
    make_user(f"{role}-1", role, is_staff=role == ADMIN)
    page = sign_in(f"{role}-1")
    assert page.locator(".topbar nav a").all_inner_texts() == expected
    assert page.locator(".session .who").inner_text().startswith(f"{role}-1")
    assert page.locator("#live-indicator").count() == 1


def test_a_wrong_password_keeps_the_visitor_out(make_user, page, live_console):
    make_user("someone", ANALYST)
    page.goto(f"{live_console.url}/login/")
    page.fill("#id_username", "someone")
    page.fill("#id_password", "not-the-password")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text().startswith("Your username and password did not match")
    assert page.locator(".topbar nav").count() == 0


@pytest.mark.parametrize("role", [ANALYST, MANAGER, ADMIN])
def test_every_page_of_each_role_works_under_the_content_security_policy(make_user, make_investigation, sign_in, role):
    """Each page in the role's navigation (and an investigation's) loads with the policy on, its
    scripts run (the live indicator connects its websocket where the page has one) and the browser
    refuses nothing."""
    make_user(f"{role}-csp", role, is_staff=role == ADMIN)
    investigation = make_investigation("CSP-1")
    page = sign_in(f"{role}-csp")
    links = page.locator(".topbar nav a").evaluate_all("links => links.map(a => a.href)")
    if role != ADMIN:
        links.append(links[0].rstrip("/") + f"/investigations/{investigation.pk}/")
    for url in links:
        response = page.goto(url)
        assert response.ok, url
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, url
        page.wait_for_load_state("load")
        if role != ADMIN and "/admin/" not in url:  # analysts' and managers' pages keep a live socket
            page.wait_for_selector("#live-indicator[data-state=live]")
    assert csp_violations(page) == []
