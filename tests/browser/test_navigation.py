import pytest

from console.roles import ADMIN, ANALYST, MANAGER

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    "role, expected",
    [
        (ANALYST, ["Overview", "Investigations", "Approvals", "New alert", "Audit trail"]),
        (MANAGER, ["Overview", "Investigations", "Approvals", "Audit trail"]),
        (ADMIN, ["Overview", "Audit trail", "Tool servers", "Administration", "Lab"]),
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
