"""The second factor (django-otp: TOTP and recovery codes), step-up for privileged decisions, decide-scoped
tokens, the idle timeout and a sign-in's lifetime (console/mfa.py, console/middleware.py, console/signin.py,
investigations/presence.py)."""

import json
import re
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from core import sockets
from investigations import presence
from investigations.approvals import services as approvals
from investigations.models import ActionApproval, ActionRequest, AuditRecord
from investigations.tokens import create_api_token
from tests.conftest import PASSWORD
from tests.support import console_env, run_manage
from toolserver.models import ToolServer

pytestmark = pytest.mark.mfa


def code_for(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """What the person's authenticator app shows now (or `steps_ahead` periods later: django-otp accepts one)."""
    device.refresh_from_db()  # the drift django-otp learnt at the last code, as the server reads it
    generator = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    generator.time = time.time() + steps_ahead * device.step
    return f"{generator.token():0{device.digits}d}"


def enrolled(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="app", confirmed=True)


def sign_in(client, user, device: TOTPDevice | None = None):
    """Password, then (if `device`) the code the gate asks for."""
    assert client.post(reverse("login"), {"username": user.username, "password": PASSWORD}).status_code == 302
    if device is not None:
        answer = client.post(reverse("step_up"), {"code": code_for(device), "next": "/"})
        assert answer.status_code == 302, answer.content.decode()


def proved_minutes_ago(client, minutes: float, factor: str = "totp") -> None:
    session = client.session
    session[presence.SESSION_KEY] = {"factor": factor, "at": (timezone.now() - timedelta(minutes=minutes)).isoformat()}
    session.save()


def pending_request(make_investigation) -> ActionRequest:
    approvals.ensure_policies()
    return ActionRequest.objects.create(
        investigation=make_investigation("MFA-1"),
        tool_use_id="toolu_mfatest01",
        tool="isolate_host",
        server="edr-response",
        arguments={"host": "WS-TEST-1", "reason": "test"},
        target="host=ws-test-1",
        reason="test",
        idempotency_key="key-mfa-1",
        expires_at=timezone.now() + timedelta(hours=1),
    )


def records(what: str):
    return AuditRecord.objects.filter(kind=AuditRecord.Kind.SIGN_IN, outcome=what)


# -- the defaults ---------------------------------------------------------------------------------
def test_by_default_the_factor_is_required_and_step_up_is_five_minutes_and_idle_thirty():
    env = console_env(GATEHOUSE_MFA_REQUIRED=None, GATEHOUSE_STEP_UP_MINUTES=None, GATEHOUSE_IDLE_MINUTES=None)
    done = run_manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.MFA_REQUIRED, s.STEP_UP_MINUTES, s.IDLE_MINUTES)",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["True", "5", "30"]


# -- enrolment ------------------------------------------------------------------------------------
def test_an_admin_must_enrol_a_totp_app_then_gets_recovery_codes_once_and_no_secret_is_recorded(
    client, admin_user, settings
):
    settings.OTP_TOTP_THROTTLE_FACTOR = 0  # a wrong code makes the next wait a second otherwise
    sign_in(client, admin_user)
    gate = client.get("/manage/")
    assert gate.status_code == 302 and gate["Location"].startswith(reverse("second_factor"))
    assert client.get("/api/manage/servers").status_code == 403  # the API on such a session too
    page = client.post(reverse("totp_start")).content.decode()
    device = TOTPDevice.objects.get(user=admin_user, confirmed=False)
    secret = re.search(r'id="totp-secret">([A-Z2-7=]+)<', page).group(1)
    assert "<svg" in page and secret
    assert client.get("/manage/").status_code == 302  # not confirmed: still gated

    wrong = client.post(reverse("totp_confirm", args=[device.pk]), {"code": "000000"})
    assert wrong.status_code == 400
    shown = client.post(reverse("totp_confirm", args=[device.pk]), {"code": code_for(device)}).content.decode()
    codes = re.findall(r"<li><code>([a-z0-9]+)</code></li>", shown)
    assert len(codes) == 10
    assert client.get("/manage/").status_code == 200  # this session gave its factor by enrolling

    trail = " ".join(str(r.extra) for r in AuditRecord.objects.all())
    assert [r.extra["factor"] for r in records("factor_enrolled").order_by("seq")] == ["totp", "recovery_code"]
    assert secret not in trail and device.key not in trail and not any(code in trail for code in codes)
    assert "Key:" not in client.get(reverse("second_factor")).content.decode()  # the key is not shown again


def test_an_analyst_who_may_approve_must_enrol_and_one_who_may_not_is_not_asked(client, analyst, make_user):
    approvals.ensure_policies()
    sign_in(client, analyst)
    assert client.get("/").status_code == 302
    client.logout()
    reader = make_user("reader")
    sign_in(client, reader)
    assert client.get("/").status_code == 200


# -- sign-in and replay ---------------------------------------------------------------------------
def test_sign_in_asks_for_the_code_after_the_password_and_a_replayed_code_is_refused(client, admin_user):
    device = enrolled(admin_user)
    sign_in(client, admin_user)
    assert client.get("/").status_code == 302
    assert client.get(reverse("second_factor")).status_code == 302  # no enrolling past the factor one has
    code = code_for(device)
    assert client.post(reverse("step_up"), {"code": code, "next": "/"}).status_code == 302
    assert client.get("/").status_code == 200
    assert records("second_factor").get().extra["factor"] == "totp"

    client.logout()
    sign_in(client, admin_user)
    replay = client.post(reverse("step_up"), {"code": code, "next": "/"})
    assert replay.status_code == 400  # django-otp keeps the last time step used: the same code fails
    assert client.get("/").status_code == 302
    assert records("step_up_failed").count() == 1
    assert code not in str(records("step_up_failed").get().extra)


def test_a_recovery_code_signs_in_once(client, admin_user):
    enrolled(admin_user)
    recovery = StaticDevice.objects.create(user=admin_user, name="Recovery codes")
    recovery.token_set.create(token="abcd1234")
    sign_in(client, admin_user)
    assert client.post(reverse("step_up"), {"code": "abcd1234", "next": "/"}).status_code == 302
    assert records("second_factor").get().extra["factor"] == "recovery_code"
    client.logout()
    sign_in(client, admin_user)
    assert client.post(reverse("step_up"), {"code": "abcd1234", "next": "/"}).status_code == 400


# -- step-up on decisions -------------------------------------------------------------------------
def test_an_approval_without_a_fresh_proof_is_refused_on_the_page_naming_step_up(client, analyst, make_investigation):
    request = pending_request(make_investigation)
    device = enrolled(analyst)
    sign_in(client, analyst, device)
    proved_minutes_ago(client, 6)
    refused = client.post(reverse("investigations:approve", args=[request.pk]), {"reason": "go"})
    assert refused.status_code == 403 and "Step-up required" in refused.content.decode()
    refused = client.post(reverse("investigations:reject", args=[request.pk]), {"reason": "no"})
    assert refused.status_code == 403 and "Step-up required" in refused.content.decode()
    assert ActionRequest.objects.get(pk=request.pk).state == "pending"
    assert AuditRecord.objects.filter(kind=AuditRecord.Kind.DECISION, outcome="denied").count() == 2

    assert client.post(reverse("step_up"), {"code": code_for(device, steps_ahead=1), "next": "/"}).status_code == 302
    assert records("step_up").get().extra["factor"] == "totp"
    done = client.post(reverse("investigations:approve", args=[request.pk]), {"reason": "go"})
    assert done.status_code == 302
    approval = ActionApproval.objects.get(request=request)
    assert approval.proof_factor == "totp" and timezone.now() - approval.proof_at < timedelta(minutes=1)
    decision = AuditRecord.objects.get(kind=AuditRecord.Kind.DECISION, outcome="approved")
    assert decision.extra["proof"] == {"factor": "totp", "at": approval.proof_at.isoformat()}


def test_the_api_refuses_a_stale_session_and_a_token_not_scoped_to_decide(client, analyst, make_investigation):
    request = pending_request(make_investigation)
    device = enrolled(analyst)
    sign_in(client, analyst, device)
    proved_minutes_ago(client, 5.5)
    url = f"/api/actions/{request.pk}/approve"
    stale = client.post(url, {}, content_type="application/json")
    assert stale.status_code == 403 and "Step-up required" in stale.json()["detail"]

    _, plain = create_api_token(analyst, "reader bot")
    refused = client.post(url, {}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {plain}")
    assert refused.status_code == 403 and "This token only reads" in refused.json()["detail"]
    assert ActionRequest.objects.get(pk=request.pk).state == "pending"

    api_token, decide = create_api_token(analyst, "chat bot", decide=True)
    assert abs(api_token.expires_at - api_token.created_at - timedelta(hours=24)) < timedelta(seconds=5)
    done = client.post(url, {}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {decide}")
    assert done.status_code == 200, done.content
    approval = ActionApproval.objects.get(request=request)
    assert approval.proof_factor == f"api_token:{api_token.token_prefix}"
    shown = client.get(f"/api/actions/{request.pk}").json()["approved_by"][0]
    assert shown["proof_factor"] == approval.proof_factor


def test_confirming_an_unknown_outcome_needs_a_fresh_proof_too(client, analyst, make_investigation):
    request = pending_request(make_investigation)
    ActionRequest.objects.filter(pk=request.pk).update(state="unconfirmed")
    _, plain = create_api_token(analyst, "reader bot")
    answer = client.post(
        f"/api/actions/{request.pk}/confirm",
        {"happened": True, "reason": "checked the EDR"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {plain}",
    )
    assert answer.status_code == 403 and "This token only reads" in answer.json()["detail"]
    assert ActionRequest.objects.get(pk=request.pk).state == "unconfirmed"


def test_an_expired_decide_token_decides_nothing(client, analyst, make_investigation):
    request = pending_request(make_investigation)
    api_token, decide = create_api_token(analyst, "chat bot", decide=True)
    type(api_token).objects.filter(pk=api_token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = client.post(
        f"/api/actions/{request.pk}/approve", {}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {decide}"
    )
    assert answer.status_code == 401
    assert ActionRequest.objects.get(pk=request.pk).state == "pending"


def test_the_command_makes_a_decide_token_that_expires_in_hours(analyst, capsys):
    call_command("api_tokens", "create", analyst.username, "--name", "bot", "--decide")
    token = analyst.api_tokens.get()
    assert token.decide and abs(token.expires_at - token.created_at - timedelta(hours=24)) < timedelta(seconds=5)
    assert "Scoped to decide" in capsys.readouterr().out


# -- admin changes --------------------------------------------------------------------------------
def siem_credential() -> dict:
    """A credential for siem as the API takes it: only the proof of presence is missing."""
    return {"secret": "x" * 20, "seen": ToolServer.objects.get(name="siem").pointed_at()}


def test_an_admin_change_needs_a_fresh_proof_on_the_page_and_the_api(client, admin_user):
    device = enrolled(admin_user)
    sign_in(client, admin_user, device)
    proved_minutes_ago(client, 6)
    page = client.post(reverse("manage:budgets"), {"budget_tool_calls": 5})
    assert page.status_code == 403 and "Step-up required" in page.content.decode()
    api = client.put("/api/manage/servers/siem/credential", siem_credential(), content_type="application/json")
    assert api.status_code == 403 and "Step-up required" in api.json()["detail"]
    assert not AuditRecord.objects.filter(kind=AuditRecord.Kind.ADMIN_CHANGE).exists()
    proved_minutes_ago(client, 1)
    assert client.post(reverse("manage:budgets"), {"budget_tool_calls": 5}).status_code != 403


@pytest.mark.parametrize("decide", [False, True])
def test_an_admin_token_cannot_borrow_the_fresh_proof_of_the_session_sent_beside_it(
    client, admin_user, make_user, decide
):
    """The session's proof is its own person's: an admin's token sent with someone else's freshly proved
    session (an analyst's here) makes no admin change, nor does a decide-scoped token, which proves decisions only."""
    _, token = create_api_token(admin_user, "leaked", decide=decide)
    insider = make_user("insider", "analyst")
    sign_in(client, insider, enrolled(insider))  # a proof just now
    answer = client.put(
        "/api/manage/servers/siem/credential",
        siem_credential(),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 403 and "Step-up required" in answer.json()["detail"]
    assert (
        not AuditRecord.objects.filter(kind=AuditRecord.Kind.ADMIN_CHANGE).exclude(outcome="api_token_created").exists()
    )


def test_a_stale_session_cannot_finish_an_abandoned_enrolment_to_gain_a_fresh_proof(client, admin_user, settings):
    """An enrolled person started adding a second app and left it; whoever holds their session once its proof is
    stale sees no key on the wrong-code page, and a right code confirms nothing and proves nothing."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0
    sign_in(client, admin_user, enrolled(admin_user))
    client.post(reverse("totp_start"))
    abandoned = TOTPDevice.objects.get(user=admin_user, confirmed=False)
    proved_minutes_ago(client, 6)

    wrong = client.post(reverse("totp_confirm", args=[abandoned.pk]), {"code": "000000"})
    assert wrong.status_code == 302 and wrong["Location"].startswith(reverse("step_up"))
    assert abandoned.key not in wrong.content.decode()
    right = client.post(reverse("totp_confirm", args=[abandoned.pk]), {"code": code_for(abandoned)})
    assert right.status_code == 302 and right["Location"].startswith(reverse("step_up"))
    abandoned.refresh_from_db()
    assert not abandoned.confirmed
    assert client.post(reverse("manage:budgets"), {"budget_tool_calls": 5}).status_code == 403  # still stale


def test_a_passkey_begun_while_fresh_is_not_completed_once_the_proof_is_stale(client, admin_user):
    """Its completion gives a fresh proof: it needs one as its beginning does, else a stale session finishes a
    registration begun earlier and is fresh again."""
    sign_in(client, admin_user, enrolled(admin_user))
    begun = client.post(reverse("otp_webauthn:credential-registration-begin"), content_type="application/json")
    assert begun.status_code == 200, begun.content
    proved_minutes_ago(client, 6)
    completed = client.post(
        reverse("otp_webauthn:credential-registration-complete"), {"id": "x"}, content_type="application/json"
    )
    assert completed.status_code == 403 and "Step-up required" in completed.content.decode()
    assert client.post(reverse("manage:budgets"), {"budget_tool_calls": 5}).status_code == 403  # still stale


def test_removing_a_factor_needs_a_fresh_proof_and_is_recorded(client, admin_user):
    device = enrolled(admin_user)
    sign_in(client, admin_user, device)
    proved_minutes_ago(client, 6)
    url = reverse("remove_factor", args=["totp", device.pk])
    assert client.post(url)["Location"].startswith(reverse("step_up"))
    assert TOTPDevice.objects.filter(pk=device.pk).exists()
    proved_minutes_ago(client, 1)
    client.post(url)
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    assert records("factor_removed").get().extra["factor"] == "totp"


# -- idle timeout and a sign-in's lifetime --------------------------------------------------------
@pytest.mark.parametrize("idle_minutes, signed_out", [(29, False), (31, True)])
def test_an_idle_admin_is_signed_out_after_thirty_minutes(client, admin_user, idle_minutes, signed_out):
    device = enrolled(admin_user)
    sign_in(client, admin_user, device)
    assert client.get("/").status_code == 200
    session = client.session
    session["gatehouse_last_seen"] = time.time() - idle_minutes * 60
    session.save()
    answer = client.get("/")
    assert (answer.status_code == 302 and answer["Location"].startswith(reverse("login"))) is signed_out
    assert records("idle_timeout").exists() is signed_out


def test_an_idle_reader_is_not_signed_out(client, make_user):
    reader = make_user("reader")
    sign_in(client, reader)
    session = client.session
    session["gatehouse_last_seen"] = time.time() - 3600
    session.save()
    assert client.get("/").status_code == 200


def test_a_sign_in_in_use_still_ends_when_its_lifetime_does(client, manager, settings):
    """GATEHOUSE_SESSION_SECONDS is how long a sign-in lasts, counted from the sign-in: each save of a session (the
    idle timeout writes one a minute of use) moved Django's expiry that far past the save, so a stolen cookie used
    every few hours never expired, on the pages or on its sockets."""
    sign_in(client, manager)
    signed_in_at, lifetime = timezone.now(), timedelta(seconds=settings.SESSION_COOKIE_AGE)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value

    saved_before = Session.objects.get(session_key=key).session_data
    with mock.patch("django.utils.timezone.now", return_value=signed_in_at + lifetime - timedelta(hours=1)):
        assert client.get("/").status_code == 200  # used an hour before its end: the session is saved
    saved = Session.objects.get(session_key=key)
    assert saved.session_data != saved_before  # saved (the idle timeout's last request), and yet:
    assert saved.expire_date <= signed_in_at + lifetime + timedelta(seconds=5)

    with mock.patch("django.utils.timezone.now", return_value=signed_in_at + lifetime + timedelta(hours=1)):
        assert sockets.session_user(key) is None  # what its open sockets ask
        assert client.get("/")["Location"].startswith(reverse("login"))


def test_break_glass_reset_removes_every_factor_and_is_recorded(admin_user, capsys):
    enrolled(admin_user)
    StaticDevice.objects.create(user=admin_user, name="Recovery codes")
    call_command("second_factor", "reset", admin_user.username)
    assert not TOTPDevice.objects.filter(user=admin_user).exists()
    assert not StaticDevice.objects.filter(user=admin_user).exists()
    assert records("factor_removed").get().extra["count"] == 2
    assert "Removed 2 factor(s)" in capsys.readouterr().out


# -- sockets --------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
async def test_a_socket_opens_only_once_the_session_gave_the_second_factor(admin_user, analyst):
    from channels.db import database_sync_to_async
    from django.test import Client

    from tests.websockets import socket

    device = await database_sync_to_async(enrolled)(analyst)
    password_only = Client()
    await database_sync_to_async(password_only.login)(username=analyst.username, password=PASSWORD)
    communicator = await socket("/ws/approvals/", client=password_only)
    assert not (await communicator.connect())[0]
    await communicator.disconnect()
    both = Client()
    await database_sync_to_async(sign_in)(both, analyst, device)
    communicator = await socket("/ws/approvals/", client=both)
    assert (await communicator.connect())[0]
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_person_who_must_enrol_opens_no_socket_on_a_password_alone(analyst):
    """The pages send an approver with no factor yet to enrol; a socket judged that person signed in (no device
    to ask for) until it read what the pages decided. Once the session gave a factor, it opens."""
    from channels.db import database_sync_to_async
    from django.test import Client

    from tests.websockets import socket

    await database_sync_to_async(approvals.ensure_policies)()  # analysts may approve: they must enrol
    password_only = Client()
    await database_sync_to_async(password_only.login)(username=analyst.username, password=PASSWORD)
    communicator = await socket("/ws/approvals/", client=password_only)
    assert not (await communicator.connect())[0]
    await communicator.disconnect()
    device = await database_sync_to_async(enrolled)(analyst)
    both = Client()
    await database_sync_to_async(sign_in)(both, analyst, device)
    communicator = await socket("/ws/approvals/", client=both)
    assert (await communicator.connect())[0]
    await communicator.disconnect()


async def socket_after_idle(
    user, investigation, idle_minutes: float, device: TOTPDevice | None = None, meanwhile=None
) -> dict:
    """What a socket of `user`'s session sends on the investigation's next event, the session's last request
    made `idle_minutes` ago (every time the console wrote at that request, moved back), after `meanwhile()`."""
    from channels.db import database_sync_to_async
    from django.test import Client

    from investigations.runs.events import record_event
    from tests.websockets import next_output, socket

    browser = Client()
    await database_sync_to_async(sign_in)(browser, user, device)
    assert (await database_sync_to_async(browser.get)("/")).status_code == 200  # their last request
    communicator = await socket(f"/ws/investigations/{investigation.pk}/", client=browser)
    assert (await communicator.connect())[0]

    def idle_since_then() -> None:
        session = browser.session
        for key in ("gatehouse_last_seen", "gatehouse_idle_until"):
            if session.get(key) is not None:
                session[key] -= idle_minutes * 60
        session.save()

    await database_sync_to_async(idle_since_then)()
    if meanwhile is not None:
        await database_sync_to_async(meanwhile)()
    await database_sync_to_async(record_event)(investigation.pk, "status", {"status": "running", "message": "Live."})
    answer = await next_output(communicator)
    await communicator.disconnect()
    return answer


def said_live(answer: dict) -> bool:
    return answer["type"] == "websocket.send" and json.loads(answer["text"])["event"]["data"]["message"] == "Live."


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("idle_minutes, ended", [(29, False), (31, True)])
async def test_an_approvers_open_socket_sends_nothing_once_they_are_idle_past_the_timeout(
    analyst, make_investigation, settings, idle_minutes, ended
):
    """The idle timeout signs a person out at their next request; a socket makes none, so it judged them
    present for as long as it stayed open (a live queue on an unattended screen)."""
    from channels.db import database_sync_to_async

    settings.SOCKET_RECHECK_SECONDS = 0
    await database_sync_to_async(approvals.ensure_policies)()  # analysts may approve: the timeout is theirs
    investigation = await database_sync_to_async(make_investigation)("IDLE-1")
    device = await database_sync_to_async(enrolled)(analyst)
    answer = await socket_after_idle(analyst, investigation, idle_minutes, device)
    assert answer == {"type": "websocket.close", "code": 4403} if ended else said_live(answer)


@pytest.mark.django_db(transaction=True)
async def test_an_idle_readers_socket_stays_open(make_user, make_investigation, settings):
    from channels.db import database_sync_to_async
    from guardian.shortcuts import assign_perm

    settings.SOCKET_RECHECK_SECONDS = 0
    reader = await database_sync_to_async(make_user)("reader")  # no role: granted this one investigation
    investigation = await database_sync_to_async(make_investigation)("IDLE-2")
    await database_sync_to_async(assign_perm)("investigations.view_investigation", reader, investigation)
    assert said_live(await socket_after_idle(reader, investigation, 60))


@pytest.mark.django_db(transaction=True)
async def test_a_reader_made_an_approver_while_idle_has_their_open_socket_closed_as_their_next_page_would(
    make_user, make_investigation, settings
):
    """The timeout is judged when the socket sends, not when the last page was: the session of someone
    who was a reader then and may approve now signs out at its next page, so its socket says nothing."""
    from channels.db import database_sync_to_async
    from django.contrib.auth.models import Group
    from guardian.shortcuts import assign_perm

    settings.SOCKET_RECHECK_SECONDS = 0
    await database_sync_to_async(approvals.ensure_policies)()
    reader = await database_sync_to_async(make_user)("reader")
    investigation = await database_sync_to_async(make_investigation)("IDLE-3")
    await database_sync_to_async(assign_perm)("investigations.view_investigation", reader, investigation)

    def made_an_analyst():
        reader.groups.add(Group.objects.get(name="analyst"))

    answer = await socket_after_idle(reader, investigation, 60, meanwhile=made_an_analyst)
    assert answer == {"type": "websocket.close", "code": 4403}


@pytest.mark.django_db(transaction=True)
async def test_a_password_only_session_of_someone_made_an_approver_since_opens_no_socket_once_its_gate_is_due(
    make_user, make_investigation
):
    """What a session owes is kept for a minute by the pages' gate; a session that loads no page (a stolen
    cookie used for the sockets only) is judged again once that minute is over, as its next page would be."""
    from channels.db import database_sync_to_async
    from django.contrib.auth.models import Group
    from django.test import Client

    from core.sockets import OWED_KEPT_S, SECOND_FACTOR_OWED
    from tests.websockets import socket

    await database_sync_to_async(approvals.ensure_policies)()
    person = await database_sync_to_async(make_user)("newcomer")  # no role: owes no factor
    investigation = await database_sync_to_async(make_investigation)("OWED-1")
    password_only = Client()
    assert await database_sync_to_async(password_only.login)(username="newcomer", password=PASSWORD)
    assert (await database_sync_to_async(password_only.get)("/")).status_code == 200  # the gate: nothing owed

    def made_an_analyst_with_a_factor_a_while_later():
        person.groups.add(Group.objects.get(name="analyst"))
        enrolled(person)
        session = password_only.session
        session[SECOND_FACTOR_OWED] = session[SECOND_FACTOR_OWED] | {"at": time.time() - OWED_KEPT_S - 1}
        session.save()

    await database_sync_to_async(made_an_analyst_with_a_factor_a_while_later)()
    for path in (f"/ws/investigations/{investigation.pk}/", "/ws/approvals/?queue=1"):
        communicator = await socket(path, client=password_only)
        assert not (await communicator.connect())[0], path
        await communicator.disconnect()
    page = await database_sync_to_async(password_only.get)("/investigations/")
    assert page.status_code == 302 and "step-up" in page["Location"]  # the pages judge the same


def test_a_decide_token_proves_a_decision_never_an_admin_change(client, admin_user):
    """A chat bot's decide token is a proof for approving a write, not for re-pointing a server."""
    _, decide = create_api_token(admin_user, "chat bot", decide=True)
    answer = client.put(
        "/api/manage/servers/siem/credential",
        siem_credential(),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {decide}",
    )
    assert answer.status_code == 403 and "Step-up required" in answer.json()["detail"]
    assert (
        not AuditRecord.objects.filter(kind=AuditRecord.Kind.ADMIN_CHANGE).exclude(outcome="api_token_created").exists()
    )


def test_the_django_admin_shows_no_factor_nor_its_key(client, admin_user):
    """django-otp's own admin pages show a TOTP key and recovery codes, and a device deleted there is not
    recorded: they are not served; factors change on the console's pages only."""
    admin_user.is_superuser = admin_user.is_staff = True
    admin_user.save()
    device = enrolled(admin_user)
    sign_in(client, admin_user, device)
    for url in (
        "/admin/otp_totp/totpdevice/",
        f"/admin/otp_totp/totpdevice/{device.pk}/change/",
        f"/admin/otp_totp/totpdevice/{device.pk}/config/",
        "/admin/otp_static/staticdevice/",
    ):
        assert client.get(url).status_code == 404, url
    assert client.get("/admin/").status_code == 200


def test_a_sockets_recheck_asks_the_consoles_judgements_once_a_minute_as_the_pages_do(client, analyst):
    """A socket re-checks every few seconds: once its session's kept decision is a minute old, what the
    person owes is read again (their devices, roles and grants), and then kept for the socket as long."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core import sockets

    sign_in(client, analyst, enrolled(analyst))
    session = client.session
    session.pop("otp_device_id")  # a session that gave no factor: what it owes is judged
    session[sockets.SECOND_FACTOR_OWED] = {"state": "", "at": time.time() - sockets.OWED_KEPT_S - 1}
    session.save()
    with CaptureQueriesContext(connection) as first:
        assert sockets.session_user(session.session_key) is None  # owes the factor it has
    with CaptureQueriesContext(connection) as again:
        assert sockets.session_user(session.session_key) is None
    assert len(again) < len(first)
    judged = [query["sql"] for query in first if "otp_totp_totpdevice" in query["sql"]]
    assert judged and not [query["sql"] for query in again if "otp_totp_totpdevice" in query["sql"]]
