"""A passkey in real headless Chromium with its virtual authenticator (the DevTools WebAuthn domain):
an approver enrols one when the console asks for a second factor, signs in with it after the password,
is refused an approval without a fresh proof (the card names step-up), and approves after a fresh
assertion; the approval and its audit record say it was a passkey.

A real `manage.py serve` console with the second factor and step-up on, reached as `localhost`
(a WebAuthn relying party is a host name, never an address).
"""

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone
from django_otp_webauthn.models import WebAuthnCredential
from playwright.sync_api import expect

from core.roles import ANALYST
from investigations import presence
from investigations.approvals import services as approvals
from investigations.models import ActionApproval, ActionRequest, AuditRecord
from tests.conftest import PASSWORD
from tests.support import ConsoleProcess, console_env, database_url_of, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.mfa, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def mfa_console(django_db_setup, django_db_blocker, lab_credentials):
    from django.db import connection

    env = console_env(
        DATABASE_URL=database_url_of(connection.settings_dict),
        GATEHOUSE_CREDENTIALS_DIR=str(lab_credentials[0]),
        GATEHOUSE_SWEEP_INTERVAL_S="3600",
        GATEHOUSE_MFA_REQUIRED="true",
        GATEHOUSE_STEP_UP_MINUTES="5",
        GATEHOUSE_IDLE_MINUTES="30",
    )
    with ConsoleProcess(env) as console:
        console.url = f"http://localhost:{console.port}"
        yield console


def with_authenticator(page):
    """A platform authenticator that holds passkeys and verifies its user: Chromium's virtual one."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }
    return cdp, cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]


def password(page, console, username: str) -> None:
    page.goto(f"{console.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")


def proof_made_stale(page) -> None:
    """As if the last proof were six minutes old: the session's record of it, in the console's database."""
    key = next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "sessionid")
    session = SessionStore(session_key=key)
    session[presence.SESSION_KEY] = {
        "factor": "webauthn",
        "at": (timezone.now() - timedelta(minutes=6)).isoformat(),
    }
    session.save()


def test_enrol_a_passkey_sign_in_with_it_and_approve_only_after_a_fresh_assertion(
    mfa_console, page, make_user, make_investigation
):
    console = mfa_console
    approvals.ensure_policies()
    user = make_user("pia", ANALYST)
    request = ActionRequest.objects.create(
        investigation=make_investigation("PASSKEY-1"),
        tool_use_id="toolu_passkey01",
        tool="isolate_host",
        server="edr-response",
        arguments={"host": "WS-TEST-1", "reason": "test"},
        target="host=ws-test-1",
        reason="test",
        idempotency_key="key-passkey-1",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    with_authenticator(page)

    # Enrol: an approver without a factor is sent to add one after the password.
    password(page, console, "pia")
    page.wait_for_url("**/account/second-factor/**")
    page.click("#passkey-register-button")
    expect(page.locator("#passkey-register-status-message")).to_have_text("Registration successful!")
    enrolment = AuditRecord.objects.filter(outcome="factor_enrolled", extra__factor="webauthn")
    wait_until(enrolment.exists, what="the passkey's enrolment, recorded")
    assert WebAuthnCredential.objects.filter(user=user, confirmed=True).count() == 1

    # Sign in again: the password, then the passkey.
    page.context.clear_cookies()
    password(page, console, "pia")
    page.wait_for_url("**/account/step-up/**")
    page.click("#passkey-verification-button")
    page.wait_for_url(f"{console.url}/")  # the assertion's answer sends the page on
    assert AuditRecord.objects.filter(outcome="second_factor", extra__factor="webauthn").count() == 1

    # A proof older than five minutes: the approval is refused and the card says step-up.
    proof_made_stale(page)
    page.goto(f"{console.url}/approvals/{request.pk}/")
    card = page.locator(f"#action-{request.pk}")
    card.locator("button.approve").click()
    expect(card.locator(".decision-message")).to_contain_text("Step-up required")
    assert ActionRequest.objects.get(pk=request.pk).state == "pending"

    # A fresh assertion, and the approval goes through, recorded with it.
    page.goto(f"{console.url}/account/step-up/?next=/approvals/{request.pk}/")
    page.click("#passkey-verification-button")
    page.wait_for_url(f"**/approvals/{request.pk}/")
    page.locator(f"#action-{request.pk} button.approve").click()
    decided = AuditRecord.objects.filter(kind=AuditRecord.Kind.DECISION, outcome="approved")
    wait_until(decided.exists, what="the approval, recorded")
    approval = ActionApproval.objects.get(request=request)
    assert approval.proof_factor == "webauthn"
    assert timezone.now() - approval.proof_at < timedelta(minutes=1)
    decision = AuditRecord.objects.get(kind=AuditRecord.Kind.DECISION, outcome="approved")
    assert decision.extra["proof"]["factor"] == "webauthn"
    assert AuditRecord.objects.filter(outcome="step_up", extra__factor="webauthn").count() == 1
