"""Sign-in throttling (django-axes) on the console's and the admin's sign-in, and sign-ins in the audit trail."""

import json
import re

import httpx2 as httpx
import pytest
from django.forms.models import model_to_dict

from investigations.audit import chain as audit
from investigations.models import AuditRecord
from tests.conftest import PASSWORD

WRONG = "zq-wrong-password-5521"
VIEWS = ["/login/", "/admin/login/"]  # the console's and the Django admin's


@pytest.fixture
def limit(settings):
    settings.AXES_FAILURE_LIMIT = 3
    return 3


def sign_in(client, view: str, username: str, password: str, address: str = "127.0.0.1"):
    return client.post(view, {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def assert_paused(response):
    assert response.status_code == 429
    page = response.content.decode()
    assert "Sign-in paused" in page and "15 minutes" in page
    assert WRONG not in page and PASSWORD not in page


@pytest.mark.parametrize("view", VIEWS)
def test_after_n_failures_for_a_user_name_its_sign_in_is_paused_from_any_address(
    client, admin_user, make_user, limit, view
):
    answers = [sign_in(client, view, "ada", WRONG, f"10.0.0.{n}") for n in range(1, limit + 1)]
    assert [answer.status_code for answer in answers[:-1]] == [200] * (limit - 1)
    assert_paused(answers[-1])

    # The right password, from an address that never failed: still paused, and nobody signed in.
    assert_paused(sign_in(client, view, "ada", PASSWORD, "10.0.0.99"))
    assert not signed_in(client)
    # Another user from that address is not held back by ada's failures.
    make_user("ed", is_staff=True)
    assert sign_in(client, view, "ed", PASSWORD, "10.0.0.99").status_code == 302
    assert signed_in(client)


@pytest.mark.parametrize("view", VIEWS)
def test_after_n_failures_from_an_address_its_sign_ins_are_paused_for_every_name(client, admin_user, limit, view):
    answers = [sign_in(client, view, f"guess-{n}", WRONG, "10.0.0.7") for n in range(limit)]
    assert_paused(answers[-1])

    assert_paused(sign_in(client, view, "ada", PASSWORD, "10.0.0.7"))
    assert not signed_in(client)
    assert sign_in(client, view, "ada", PASSWORD, "10.0.0.8").status_code == 302  # another address
    assert signed_in(client)


def test_signing_in_as_oneself_between_guesses_does_not_clear_the_failures_counted_against_another_name(
    client, admin_user, make_user, limit
):
    """Else anyone with an account of their own guesses another's password without end: limit - 1 guesses,
    then one sign-in of their own (which cleared every failure from their address, the victim's too), again."""
    make_user("mallory")
    for _ in range(limit - 1):
        assert sign_in(client, "/login/", "ada", WRONG, "10.9.9.9").status_code == 200
    assert sign_in(client, "/login/", "mallory", PASSWORD, "10.9.9.9").status_code == 302
    client.post("/logout/", REMOTE_ADDR="10.9.9.9")
    assert_paused(sign_in(client, "/login/", "ada", WRONG, "10.9.9.9"))  # the limit-th guess at ada
    assert_paused(sign_in(client, "/login/", "ada", PASSWORD, "10.9.9.7"))  # counted for the name, from anywhere
    assert not signed_in(client)


def test_a_sign_in_clears_its_own_names_failures(client, admin_user, limit):
    for _ in range(limit - 1):
        assert sign_in(client, "/login/", "ada", WRONG, "10.9.8.1").status_code == 200
    assert sign_in(client, "/login/", "ada", PASSWORD, "10.9.8.2").status_code == 302
    client.post("/logout/", REMOTE_ADDR="10.9.8.2")
    assert sign_in(client, "/login/", "ada", WRONG, "10.9.8.3").status_code == 200  # a typo later: not paused


def sign_in_records() -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(kind="sign_in").order_by("seq"))


def test_sign_ins_failures_and_sign_outs_are_chained_audit_records_without_the_password(client, admin_user):
    assert sign_in(client, "/login/", "ada", WRONG, "10.0.0.3").status_code == 200
    assert sign_in(client, "/login/", "ada", PASSWORD, "10.0.0.3").status_code == 302
    assert client.post("/logout/", REMOTE_ADDR="10.0.0.3").status_code == 302
    assert sign_in(client, "/admin/login/", "nobody-here", WRONG, "10.0.0.4").status_code == 200
    assert sign_in(client, "/admin/login/", "ada", PASSWORD, "10.0.0.4").status_code == 302

    records = sign_in_records()
    assert [(record.outcome, record.actor, record.extra) for record in records] == [
        ("login_failed", "user:ada", {"address": "10.0.0.3"}),
        ("logged_in", "user:ada", {"address": "10.0.0.3"}),
        ("logged_out", "user:ada", {"address": "10.0.0.3"}),
        ("login_failed", "user:nobody-here", {"address": "10.0.0.4"}),
        ("logged_in", "user:ada", {"address": "10.0.0.4"}),
    ]
    assert audit.verify_database()[1] is None  # each one a link of the chain
    stored = json.dumps([model_to_dict(record) for record in AuditRecord.objects.all()], default=str)
    assert WRONG not in stored and PASSWORD not in stored


@pytest.mark.django_db(transaction=True)  # the console process must see the user
def test_the_running_console_answers_a_paused_sign_in_with_the_lockout_page(live_console, admin_user, settings):
    """Through uvicorn and Django's async middleware chain, as people reach it."""
    with httpx.Client(base_url=live_console.url, timeout=10) as browser:
        for _ in range(settings.AXES_FAILURE_LIMIT):  # the console's own limit: this run's settings are its
            form = browser.get("/login/").text
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
            answer = browser.post("/login/", data={"csrfmiddlewaretoken": token, "username": "ada", "password": WRONG})
        assert answer.status_code == 429
        assert "Sign-in paused" in answer.text and WRONG not in answer.text


@pytest.mark.django_db(transaction=True)  # the console process must see what it records
@pytest.mark.parametrize(
    "trusted, seen",
    [("127.0.0.1", "203.0.113.9"), ("192.0.2.1", "127.0.0.1")],
    ids=["the-proxy-is-trusted", "another-proxy-is-trusted"],
)
def test_behind_a_proxy_a_client_is_the_address_its_trusted_proxy_forwards_and_no_other(trusted, seen, lab_credentials):
    """Throttling and the trail see the client's address: the proxy's own for everyone would let five wrong
    passwords pause every sign-in; one forwarded by anyone but the proxy would be the client's invention."""
    from django.db import connection

    from tests.support import ConsoleProcess, console_env, database_url_of

    env = console_env(
        DATABASE_URL=database_url_of(connection.settings_dict),
        GATEHOUSE_CREDENTIALS_DIR=str(lab_credentials[0]),
        GATEHOUSE_BEHIND_PROXY="true",
        GATEHOUSE_TRUSTED_PROXIES=trusted,
    )
    with ConsoleProcess(env) as console, httpx.Client(base_url=console.url, timeout=10) as browser:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', browser.get("/login/").text).group(1)
        answer = browser.post(
            "/login/",
            data={"csrfmiddlewaretoken": token, "username": "ada", "password": WRONG},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert answer.status_code == 200
    ((outcome, address),) = [(record.outcome, record.extra["address"]) for record in sign_in_records()]
    assert (outcome, address) == ("login_failed", seen)
