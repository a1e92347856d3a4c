"""Single sign-on in Chromium: the console (`manage.py serve`, configured by its GATEHOUSE_OIDC_*
variables) sends the browser to a real OpenID Connect provider on loopback and back."""

import pytest

from core.roles import ANALYST
from tests.browser.conftest import csp_violations
from tests.console import oidc
from tests.support import ConsoleProcess, console_env, database_url_of

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sso_console(lab_credentials):
    from django.db import connection

    with oidc.provider() as issuer:
        env = console_env(
            DATABASE_URL=database_url_of(connection.settings_dict),
            GATEHOUSE_CREDENTIALS_DIR=str(lab_credentials[0]),
            GATEHOUSE_SWEEP_INTERVAL_S="3600",
            GATEHOUSE_OIDC_ISSUER=issuer,
            GATEHOUSE_OIDC_CLIENT_ID=oidc.CLIENT_ID,
            GATEHOUSE_OIDC_CLIENT_SECRET=oidc.CLIENT_SECRET,
            GATEHOUSE_OIDC_ROLE_GROUPS=",".join(f"{group}={role}" for group, role in oidc.ROLE_GROUPS.items()),
            GATEHOUSE_OIDC_PROVIDER_NAME="Corp SSO",
            GATEHOUSE_PASSWORD_SIGNIN="admins",
        )
        with ConsoleProcess(env) as console:
            yield issuer, console


def test_an_analyst_signs_in_through_the_idp_and_lands_with_the_analyst_s_navigation(page, sso_console):
    issuer, console = sso_console
    oidc.set_claims(issuer, "u-3001", preferred_username="rin", groups=["soc-analysts"])

    page.goto(f"{console.url}/login/")
    assert page.get_by_text("Passwords are for break-glass admin accounts only.").count() == 1
    page.get_by_role("link", name="Sign in with Corp SSO").click()
    page.wait_for_url(f"{issuer}/oauth2/authorize?**")
    page.fill("input[name=sub]", "u-3001")  # the IdP's own page: the person picks their account
    page.get_by_role("button", name="Authorize").click()

    page.wait_for_selector(".topbar nav")
    assert page.url == f"{console.url}/"
    assert page.locator(".session .who").inner_text().startswith("rin")
    assert "New alert" in page.locator(".topbar nav a").all_inner_texts()
    assert csp_violations(page) == []

    from django.contrib.auth import get_user_model

    assert {group.name for group in get_user_model().objects.get(username="rin").groups.all()} == {ANALYST}
