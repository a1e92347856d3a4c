"""Single sign-on (console/sso.py) against a real OpenID Connect provider on loopback (tests/console/oidc.py):
groups to roles, accounts just in time, roles taken at the next sign-in, and the tokens the console refuses.
The refusals are mozilla-django-oidc's and PyJWT's checks; each test asserts the reason they gave."""

import re
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.models import WebAuthnCredential

from console.models import SsoIdentity
from core.roles import ADMIN, ANALYST, MANAGER, roles_of
from investigations import presence
from investigations.models import ActionApproval, ActionRequest, AuditRecord
from tests.conftest import PASSWORD
from tests.console import oidc
from tests.console.passkeys import SoftAuthenticator
from tests.console.test_mfa import code_for, pending_request, proved_minutes_ago, records
from tests.support import WAIT_S
from tests.websockets import next_output, socket

User = get_user_model()


@pytest.fixture
def idp(settings):
    with oidc.provider() as issuer:
        oidc.configure(settings, issuer)
        yield issuer


def roles(username: str) -> set[str]:
    return roles_of(User.objects.get(username=username))


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def sign_ins() -> list[tuple[str, str, dict]]:
    return [(r.outcome, r.actor, r.extra) for r in AuditRecord.objects.filter(kind="sign_in").order_by("seq")]


def role_changes() -> list[tuple[str, str, dict]]:
    return [
        (r.outcome, r.actor, r.extra["after"])
        for r in AuditRecord.objects.filter(kind="admin_change").order_by("seq")
        if r.outcome.startswith("role_")
    ]


def refused(answer) -> bool:
    return answer.status_code == 302 and answer["Location"] == "/login/?sso=refused"


def assert_no_token_recorded() -> None:
    # A JWT's header starts "eyJ" (base64 of '{"'): no ID or access token in any record.
    for record in AuditRecord.objects.all():
        assert "eyJ" not in f"{record.extra} {record.text}", record.extra


@pytest.mark.django_db
def test_a_first_sign_in_creates_the_account_with_the_roles_of_its_groups(client, idp):
    oidc.set_claims(
        idp, "u-1001", preferred_username="sam", email="sam@corp.test", groups=["soc-analysts", "soc-leads", "hr"]
    )

    answer = oidc.sign_in(client, "u-1001")

    assert answer.status_code == 302 and answer["Location"] == "/"
    assert signed_in(client)
    sam = User.objects.get(username="sam")
    assert (sam.email, sam.has_usable_password()) == ("sam@corp.test", False)
    assert (sam.sso_identity.issuer, sam.sso_identity.subject) == (idp, "u-1001")
    assert roles("sam") == {ANALYST, MANAGER}
    by_idp = f"idp:{idp}"
    assert role_changes() == [
        ("role_granted", by_idp, {"user": "sam", "role": ANALYST}),
        ("role_granted", by_idp, {"user": "sam", "role": MANAGER}),
    ]
    assert sign_ins() == [("logged_in", "user:sam", {"address": "127.0.0.1", "how": "sso"})]
    assert client.get("/").status_code == 200
    assert_no_token_recorded()


@pytest.mark.django_db
def test_a_group_removed_at_the_idp_removes_the_role_at_the_next_sign_in(idp):
    oidc.set_claims(idp, "u-1002", preferred_username="kim", groups=["soc-analysts", "soc-admins"])
    assert oidc.sign_in(Client(), "u-1002").status_code == 302
    assert roles("kim") == {ANALYST, ADMIN}

    oidc.set_claims(idp, "u-1002", preferred_username="kim", groups=["soc-analysts"])
    assert oidc.sign_in(Client(), "u-1002")["Location"] == "/"
    assert roles("kim") == {ANALYST}
    assert role_changes()[-1] == ("role_revoked", f"idp:{idp}", {"user": "kim", "role": ADMIN})
    assert User.objects.filter(username="kim").count() == 1  # the same account, found by its subject

    # No group left that maps to a role: the last role goes, and the sign-in is refused.
    oidc.set_claims(idp, "u-1002", preferred_username="kim", groups=["hr"])
    client = Client()
    assert refused(oidc.sign_in(client, "u-1002"))
    assert not signed_in(client)
    assert roles("kim") == set()
    assert role_changes()[-1] == ("role_revoked", f"idp:{idp}", {"user": "kim", "role": ANALYST})
    assert sign_ins()[-1] == (
        "login_failed",
        "user:kim",
        {"address": "127.0.0.1", "how": "sso", "reason": "none of their groups maps to a role"},
    )


@pytest.mark.django_db(transaction=True)
async def test_a_role_the_idp_takes_away_closes_the_person_s_open_sockets(idp):
    """The socket of their sign-in in one browser closes (4403) when a sign-in in another finds the group gone."""
    oidc.set_claims(idp, "u-1005", preferred_username="noa", groups=["soc-analysts"])
    browser = Client()
    assert (await database_sync_to_async(oidc.sign_in)(browser, "u-1005"))["Location"] == "/"
    queue = await socket("/ws/approvals/?queue=1", client=browser)
    assert (await queue.connect())[0]
    assert (await queue.receive_json_from(timeout=5))["type"]  # the queue's snapshot: the socket listens

    oidc.set_claims(idp, "u-1005", preferred_username="noa", groups=["hr"])
    assert refused(await database_sync_to_async(oidc.sign_in)(Client(), "u-1005"))
    assert await next_output(queue) == {"type": "websocket.close", "code": 4403}


@pytest.mark.django_db
def test_someone_in_no_mapped_group_gets_no_account(client, idp):
    oidc.set_claims(idp, "u-1003", preferred_username="pat", groups=["finance"])
    assert refused(oidc.sign_in(client, "u-1003"))
    assert not User.objects.filter(username="pat").exists()
    assert sign_ins() == [
        (
            "login_failed",
            "user:pat",
            {"address": "127.0.0.1", "how": "sso", "reason": "none of their groups maps to a role"},
        )
    ]


@pytest.mark.django_db
def test_an_idp_account_named_like_a_local_one_never_signs_in_as_it(client, idp, make_user):
    make_user("root-admin", ADMIN)
    oidc.set_claims(idp, "u-evil", preferred_username="root-admin", email="root@corp.test", groups=["soc-analysts"])

    assert refused(oidc.sign_in(client, "u-evil"))
    assert not signed_in(client)
    assert not SsoIdentity.objects.exists()
    assert roles("root-admin") == {ADMIN}
    assert sign_ins()[-1][2]["reason"] == "the user name 'root-admin' is another account's"


@pytest.mark.django_db
def test_a_deactivated_account_is_refused_at_the_idp_s_door_too(client, idp):
    oidc.set_claims(idp, "u-1004", preferred_username="lee", groups=["soc-analysts"])
    assert oidc.sign_in(Client(), "u-1004")["Location"] == "/"
    User.objects.filter(username="lee").update(is_active=False)
    assert refused(oidc.sign_in(client, "u-1004"))
    assert sign_ins()[-1][2]["reason"] == "the account is deactivated"


@pytest.mark.django_db
def test_an_sso_session_ends_with_deactivation_or_with_single_sign_on_switched_off(client, settings, idp):
    oidc.set_claims(idp, "u-1010", preferred_username="lee", groups=["soc-analysts"])
    assert oidc.sign_in(client, "u-1010")["Location"] == "/"
    other = Client()
    assert oidc.sign_in(other, "u-1010")["Location"] == "/"
    assert client.get("/").status_code == other.get("/").status_code == 200

    settings.OIDC_ISSUER = ""
    assert client.get("/")["Location"].startswith("/login/")
    settings.OIDC_ISSUER = idp
    user = User.objects.get(username="lee")
    user.is_active = False
    user.save()
    assert other.get("/")["Location"].startswith("/login/")


@pytest.mark.django_db
def test_an_idp_that_stops_answering_mid_sign_in_is_a_recorded_refusal(client, settings):
    with oidc.provider() as issuer:
        oidc.configure(settings, issuer)
        oidc.set_claims(issuer, "u-1006", preferred_username="lee", groups=["soc-analysts"])
        start = client.get("/oidc/authenticate/")
        chosen = oidc.httpx.post(start["Location"], data={"sub": "u-1006"}, timeout=oidc.WAIT_S)
    answer = client.get(chosen.headers["location"])  # the code comes back; its token endpoint is gone
    assert refused(answer)
    assert sign_ins()[-1][2]["reason"] == "the identity provider did not answer (ConnectionError)"


@pytest.mark.django_db
def test_without_discovery_the_sign_in_button_says_the_idp_is_unavailable(client, settings):
    with oidc.provider() as issuer:
        pass  # a loopback port nothing listens on any more
    oidc.configure(settings, issuer)
    answer = client.get("/oidc/authenticate/", follow=True)
    assert answer.redirect_chain == [("/login/", 302)]
    assert "Single sign-on is unavailable" in answer.content.decode()


@pytest.mark.django_db
def test_no_token_nor_the_client_secret_reaches_a_log_a_record_a_session_or_a_page(client, idp, caplog):
    caplog.set_level("DEBUG")
    oidc.set_claims(idp, "u-1007", preferred_username="lee", groups=["soc-analysts"])
    pages = [oidc.sign_in(client, "u-1007"), client.get("/"), client.get("/account/")]
    oidc.set_claims(idp, "u-1008", preferred_username="zed", groups=["soc-analysts"], aud="payroll-app")
    pages.append(oidc.sign_in(Client(), "u-1008"))

    from django.contrib.sessions.models import Session

    stored = " ".join(str(session.get_decoded()) for session in Session.objects.all())
    seen = " ".join([caplog.text, stored, *(page.content.decode() for page in pages)])
    assert "sso" in stored or "_auth_user_id" in stored  # the sessions were read
    assert oidc.CLIENT_SECRET not in seen
    # No JWT (its header is base64 of '{"', so "eyJ", then dot-separated parts); "eyJ" alone came up
    # inside one of the provider's random opaque codes, which its own debug log shows.
    assert not re.search(r"eyJ[\w-]*\.[\w-]+\.", seen)
    assert_no_token_recorded()


@pytest.mark.django_db
def test_a_sign_in_denied_at_the_idp_or_not_this_browser_s_is_recorded_too(client, idp):
    oidc.set_claims(idp, "u-1009", preferred_username="lee", groups=["soc-analysts"])
    start = client.get("/oidc/authenticate/")
    denied = oidc.httpx.post(start["Location"], data={"action": "deny"}, timeout=oidc.WAIT_S)
    assert refused(client.get(denied.headers["location"]))

    # Another browser's answer (its code and state) brought to this one: its state is not this session's.
    other = Client()
    other_start = other.get("/oidc/authenticate/")
    chosen = oidc.httpx.post(other_start["Location"], data={"sub": "u-1009"}, timeout=oidc.WAIT_S)
    client.get("/oidc/authenticate/")  # this browser is waiting for an answer of its own
    assert refused(client.get(chosen.headers["location"]))
    assert not signed_in(client)
    assert [extra["reason"] for _, _, extra in sign_ins()] == [
        "the identity provider answered 'access_denied'",
        "the answer's state is not one this browser asked for",
    ]


# Tokens the console must refuse. Each is signed by the real provider (or, for `alg: none`, stripped
# of its signature on the way); the reason recorded is the library's.


def assert_refused_and_recorded(client, answer, reason: str) -> None:
    assert refused(answer)
    assert not signed_in(client)
    assert not User.objects.exclude(username="").exists()
    (outcome, _, extra) = sign_ins()[-1]
    assert (outcome, extra["how"]) == ("login_failed", "sso")
    assert extra["reason"] == reason
    assert_no_token_recorded()


@pytest.mark.django_db
def test_a_token_whose_audience_claim_names_another_app_is_refused(client, idp):
    oidc.set_claims(idp, "u-2002", preferred_username="ivy", groups=["soc-analysts"], aud="payroll-app")
    answer = oidc.sign_in(client, "u-2002")
    assert_refused_and_recorded(client, answer, "ID token refused: Audience doesn't match")


@pytest.mark.django_db
def test_an_expired_token_is_refused(client, settings):
    # A provider whose clock is behind by more than the console's leeway: its tokens expired when issued.
    with oidc.provider(token_lifetime=timedelta(minutes=-5)) as issuer:
        oidc.configure(settings, issuer)
        oidc.set_claims(issuer, "u-2003", preferred_username="ivy", groups=["soc-analysts"])
        answer = oidc.sign_in(client, "u-2003")
    assert_refused_and_recorded(client, answer, "ID token refused: Signature has expired")


@pytest.mark.django_db
def test_a_token_from_another_issuer_is_refused(client, idp):
    with oidc.provider() as other:
        oidc.set_claims(idp, "u-2004", preferred_username="ivy", groups=["soc-analysts"], iss=other)
        answer = oidc.sign_in(client, "u-2004")
    assert_refused_and_recorded(client, answer, "ID token refused: Invalid issuer")


@pytest.mark.django_db
def test_a_token_another_provider_signed_is_refused(client, settings, idp):
    """A second provider issues the tokens, for the very request the console made (its nonce, its
    PKCE challenge), answered in place of the console's IdP: its key is not the IdP's."""
    with oidc.provider() as other, oidc.tampering(idp, strip_signature=False) as proxy:
        oidc.configure(settings, proxy.url)
        oidc.set_claims(other, "u-2007", preferred_username="ivy", groups=["soc-admins"])
        start = client.get("/oidc/authenticate/")
        proxy.token_from = (other, oidc.code_from(other, start["Location"], "u-2007"))
        chosen = oidc.httpx.post(start["Location"], data={"sub": "u-2007"}, timeout=oidc.WAIT_S)
        answer = client.get(chosen.headers["location"])
    assert_refused_and_recorded(client, answer, "ID token refused: Signature verification failed")


@pytest.mark.django_db
def test_an_unsigned_token_is_refused(client, settings, idp):
    with oidc.tampering(idp) as proxy:
        oidc.configure(settings, proxy.url)
        oidc.set_claims(proxy.url, "u-2005", preferred_username="ivy", groups=["soc-analysts"])
        answer = oidc.sign_in(client, "u-2005")
    assert_refused_and_recorded(client, answer, "ID token refused: The specified alg value is not allowed")


@pytest.mark.django_db
def test_through_the_proxy_untouched_the_same_sign_in_succeeds(client, settings, idp):
    """The unsigned-token test's control: through the proxy, only the signature makes the difference."""
    with oidc.tampering(idp, strip_signature=False) as proxy:
        oidc.configure(settings, proxy.url)
        oidc.set_claims(proxy.url, "u-2005", preferred_username="ivy", groups=["soc-analysts"])
        assert oidc.sign_in(client, "u-2005")["Location"] == "/"
    assert signed_in(client)


# Local passwords: on, break-glass admins only, or off.


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "who", "signs_in"),
    [("on", "ana", True), ("admins", "ana", False), ("admins", "root", True), ("off", "root", False)],
)
def test_the_password_form_follows_the_password_setting(client, settings, make_user, mode, who, signs_in):
    make_user("ana", ANALYST)
    make_user("root", ADMIN)
    settings.PASSWORD_SIGNIN = mode
    answer = client.post("/login/", {"username": who, "password": PASSWORD})
    assert signed_in(client) is signs_in
    assert (answer.status_code == 302) is signs_in
    assert sign_ins()[-1][:2] == ("logged_in" if signs_in else "login_failed", f"user:{who}")
    if mode == "off":
        assert "Password sign-in is switched off." in answer.content.decode()


@pytest.mark.mfa
@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["on", "admins"])
def test_an_sso_account_never_signs_in_with_a_password_even_one_a_superuser_set(client, idp, settings, mode):
    """Its session would owe no factor (the IdP is taken to have asked for them): a password alone would do."""
    oidc.set_claims(idp, "u-1201", preferred_username="sol", groups=["soc-admins"])
    assert oidc.sign_in(client, "u-1201")["Location"] == "/"
    sol = User.objects.get(username="sol")
    sol.set_password(PASSWORD)
    sol.save()
    settings.PASSWORD_SIGNIN = mode
    browser = Client()
    answer = browser.post("/login/", {"username": "sol", "password": PASSWORD})
    assert answer.status_code == 200 and not signed_in(browser)
    assert browser.get("/manage/").status_code == 302
    assert sign_ins()[-1][:2] == ("login_failed", "user:sol")


@pytest.mark.django_db
def test_switching_passwords_off_ends_the_password_sessions(client, settings, make_user):
    make_user("root", ADMIN)
    assert client.post("/login/", {"username": "root", "password": PASSWORD}).status_code == 302
    assert client.get("/").status_code == 200
    settings.PASSWORD_SIGNIN = "off"
    assert client.get("/")["Location"].startswith("/login/")


@pytest.mark.django_db
def test_the_sign_in_page_offers_the_idp_only_when_one_is_configured(client, idp, settings):
    assert "Sign in with" in client.get("/login/").content.decode()
    settings.OIDC_ISSUER = ""
    assert "Sign in with" not in client.get("/login/").content.decode()
    assert client.get("/oidc/authenticate/").status_code == 404


# -- step-up for an SSO account: a fresh sign-in at the IdP ------------------------------------------
def step_up_at_idp(client, sub: str, next_url: str):
    """The console's step-up page, for an SSO account: to the IdP (asked to sign the person in again),
    the person signs in there as `sub`, and back. The console's last answer, and what the IdP was asked."""
    to_sso = client.get(f"/account/step-up/?next={next_url}")
    assert to_sso.status_code == 302 and to_sso["Location"].startswith("/oidc/step-up/"), to_sso
    to_idp = client.get(to_sso["Location"])
    assert to_idp.status_code == 302, to_idp
    asked = parse_qs(urlsplit(to_idp["Location"]).query)
    chosen = httpx.post(to_idp["Location"], data={"sub": sub}, timeout=WAIT_S)
    assert chosen.status_code == 302, chosen.text
    return client.get(chosen.headers["location"]), asked


def approver_signed_in(client, idp, sub: str, username: str, **claims):
    oidc.set_claims(idp, sub, preferred_username=username, groups=["soc-analysts"], **claims)
    assert oidc.sign_in(client, sub)["Location"] == "/"
    return User.objects.get(username=username)


@pytest.mark.mfa
@pytest.mark.django_db
def test_an_sso_approver_steps_up_with_a_fresh_sign_in_at_the_idp_then_decides(client, idp, make_investigation):
    approver_signed_in(client, idp, "u-3001", "rio")
    assert client.get("/").status_code == 200  # the IdP asked for the factors: no local one to enrol
    assert presence.from_session(client.session).factor == "idp"  # the sign-in counts, from its auth_time
    request = pending_request(make_investigation)
    proved_minutes_ago(client, 6, factor="idp")
    approve = reverse("investigations:approve", args=[request.pk])
    refused = client.post(approve, {"reason": "go"})
    assert refused.status_code == 403 and "Step-up required" in refused.content.decode()

    back, asked = step_up_at_idp(client, "u-3001", approve)
    assert (asked["prompt"], asked["max_age"]) == (["login"], ["0"])  # whatever session the IdP holds
    assert back.status_code == 302 and back["Location"] == approve
    assert records("step_up").get().extra["factor"] == "idp"
    assert client.post(approve, {"reason": "go"}).status_code == 302
    approval = ActionApproval.objects.get(request=request)
    assert approval.proof_factor == "idp" and timezone.now() - approval.proof_at < timedelta(minutes=1)


def post_json(client, name: str, body=None):
    return client.post(reverse(f"otp_webauthn:{name}"), body or {}, content_type="application/json")


@pytest.mark.mfa
@pytest.mark.django_db
def test_an_sso_account_adds_no_factor_of_its_own_even_fresh_from_its_sign_in(client, idp):
    """Its factors are its IdP's and its step-up a fresh sign-in there. One of its own, added in the minutes its
    sign-in counts as a proof by whoever holds the browser then, would stand in for the IdP (and its conditional
    access) for the rest of the session and the next ones."""
    ren = approver_signed_in(client, idp, "u-3101", "ren")  # a fresh proof: the sign-in
    started = client.post(reverse("totp_start"))
    assert started.status_code == 302 and started["Location"] == reverse("second_factor")
    unconfirmed = TOTPDevice.objects.create(user=ren, name="app", confirmed=False)  # however it came to be
    confirmed = client.post(reverse("totp_confirm", args=[unconfirmed.pk]), {"code": code_for(unconfirmed)})
    assert confirmed.status_code == 302 and confirmed["Location"] == reverse("second_factor")
    assert not TOTPDevice.objects.filter(user=ren, confirmed=True).exists()
    for step in ("credential-registration-begin", "credential-registration-complete"):
        passkey = post_json(client, step)
        assert passkey.status_code == 403 and "identity provider" in passkey.json()["detail"], passkey.content
    assert not WebAuthnCredential.objects.filter(user=ren).exists()
    assert not records("factor_enrolled").exists()
    page = client.get(reverse("second_factor")).content.decode()  # nor does its page offer one
    assert "your factors are your identity provider's" in page
    assert not any(offer in page for offer in ('id="totp-start"', "passkey-register-button", "New recovery codes"))
    account = client.get("/account/").content.decode()  # nor a password it never has
    assert reverse("password_change") not in account and "identity provider" in account


@pytest.mark.mfa
@pytest.mark.django_db
def test_an_sso_account_s_own_passkey_never_stands_in_for_a_fresh_sign_in_at_the_idp(client, idp, make_investigation):
    """A passkey the account holds (added while that was allowed) asserted on the console's own WebAuthn endpoints,
    not at the IdP: no proof of presence, no step-up, no decision."""
    rio = approver_signed_in(client, idp, "u-3102", "rio")
    authenticator = SoftAuthenticator()
    authenticator.held_by(rio)
    request = pending_request(make_investigation)
    approve = reverse("investigations:approve", args=[request.pk])
    proved_minutes_ago(client, 60, factor="idp")
    assert client.get(f"{reverse('step_up')}?next=/")["Location"].startswith(reverse("oidc_step_up"))

    options = post_json(client, "credential-authentication-begin")
    assert options.status_code == 200, options.content
    asserted = post_json(client, "credential-authentication-complete", authenticator.get(options.json()))
    assert asserted.status_code == 403 and "identity provider" in asserted.json()["detail"], asserted.content
    assert presence.from_session(client.session).factor == "idp" and not records("step_up").exists()
    assert client.post(approve, {"reason": "go"}).status_code == 403
    assert ActionRequest.objects.get(pk=request.pk).state == "pending"


@pytest.mark.mfa
@pytest.mark.django_db
def test_an_idp_that_answers_a_step_up_with_an_old_sign_in_proves_nothing(client, idp, make_investigation):
    """An IdP that ignores prompt=login hands back its old session: the ID token's auth_time says so."""
    an_hour_ago = int(time.time()) - 3600
    approver_signed_in(client, idp, "u-3002", "ash", auth_time=an_hour_ago)
    request = pending_request(make_investigation)
    approve = reverse("investigations:approve", args=[request.pk])
    assert client.post(approve, {"reason": "go"}).status_code == 403  # the sign-in an hour old is no proof

    back, _ = step_up_at_idp(client, "u-3002", approve)
    assert back.status_code == 302 and signed_in(client)
    assert records("step_up_failed").get().extra["reason"].startswith("the identity provider did not sign")
    assert not records("step_up").exists()
    assert client.post(approve, {"reason": "go"}).status_code == 403
    assert ActionRequest.objects.get(pk=request.pk).state == "pending"


@pytest.mark.mfa
@pytest.mark.django_db
def test_a_step_up_answered_for_another_idp_account_neither_proves_nor_switches_the_session(
    client, idp, make_investigation
):
    rio = approver_signed_in(client, idp, "u-3003", "rio")
    oidc.set_claims(idp, "u-3004", preferred_username="mallory", groups=["soc-analysts"])
    request = pending_request(make_investigation)
    proved_minutes_ago(client, 6, factor="idp")
    approve = reverse("investigations:approve", args=[request.pk])

    step_up_at_idp(client, "u-3004", approve)
    assert client.session["_auth_user_id"] == str(rio.pk)
    assert records("step_up_failed").get().extra["reason"] == "the identity provider signed in another account"
    assert client.post(approve, {"reason": "go"}).status_code == 403


@pytest.mark.django_db
def test_a_local_account_is_not_sent_to_the_idp_to_step_up(client, idp, analyst):
    client.force_login(analyst)
    assert client.get("/oidc/step-up/?next=/").url == reverse("step_up")


@pytest.mark.mfa
@pytest.mark.django_db
def test_where_the_idp_must_say_it_used_a_second_factor_a_password_sign_in_proves_no_presence(
    client, idp, make_investigation, settings
):
    """GATEHOUSE_OIDC_PRESENCE_AMR=mfa: a sign-in (or a step-up) at the IdP counts as a proof of presence
    only if its ID token's `amr` (RFC 8176) names one of those methods. One by password alone signs the
    person in, and proves nothing: a decision still needs a step-up, which a password alone does not give."""
    settings.OIDC_PRESENCE_AMR = ["mfa"]
    approver_signed_in(client, idp, "u-3201", "kai", amr=["pwd"])
    assert signed_in(client) and presence.from_session(client.session) is None
    request = pending_request(make_investigation)
    approve = reverse("investigations:approve", args=[request.pk])
    assert client.post(approve, {"reason": "go"}).status_code == 403

    step_up_at_idp(client, "u-3201", approve)
    assert records("step_up_failed").get().extra["reason"] == (
        "the identity provider did not say it used a required method (amr: pwd; required: mfa)"
    )
    assert presence.from_session(client.session) is None and not records("step_up").exists()
    assert client.post(approve, {"reason": "go"}).status_code == 403

    oidc.set_claims(idp, "u-3201", preferred_username="kai", groups=["soc-analysts"], amr=["pwd", "mfa"])
    back, _ = step_up_at_idp(client, "u-3201", approve)
    assert back["Location"] == approve and records("step_up").get().extra["factor"] == "idp"
    assert client.post(approve, {"reason": "go"}).status_code == 302
    assert ActionApproval.objects.get(request=request).proof_factor == "idp"
