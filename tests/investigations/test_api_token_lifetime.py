"""People's API tokens expire, are revoked by their owner on the Account page, and die with a
password change or a deactivation (issue 14, item 7)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from investigations.models import ApiToken, AuditRecord
from investigations.tokens import create_api_token
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-new-long-passphrase-4471"


def works(client, token: str) -> bool:
    response = client.get("/api/actions", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code in (200, 401), response.status_code
    return response.status_code == 200


def test_a_token_expires_after_the_configured_days(client, analyst, settings):
    settings.API_TOKEN_DAYS = 7
    api_token, token = create_api_token(analyst, "script")
    assert timedelta(days=7) - timedelta(minutes=1) < api_token.expires_at - timezone.now() <= timedelta(days=7)
    assert works(client, token)
    ApiToken.objects.filter(pk=api_token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert not works(client, token)


def test_the_owner_lists_and_revokes_their_tokens_on_the_account_page(client, analyst, make_user):
    mine, token = create_api_token(analyst, "chatops bot")
    theirs, their_token = create_api_token(make_user("bob", "analyst"), "bob's script")
    client.force_login(analyst)
    page = client.get(reverse("account")).content.decode()
    assert "chatops bot" in page and mine.token_prefix in page
    assert "bob&#x27;s script" not in page and theirs.token_prefix not in page
    assert token not in page

    # Someone else's token is not theirs to revoke, nor to learn exists.
    assert client.post(reverse("revoke_api_token", args=[theirs.pk])).status_code == 404
    assert works(client, their_token)

    response = client.post(reverse("revoke_api_token", args=[mine.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("account")
    assert not works(client, token)
    assert "revoked" in client.get(reverse("account")).content.decode()
    assert client.get(reverse("revoke_api_token", args=[mine.pk])).status_code == 405


def test_a_password_change_on_the_page_kills_every_token_and_keeps_the_session(client, analyst):
    _, first = create_api_token(analyst, "one")
    _, second = create_api_token(analyst, "two")
    client.force_login(analyst)
    assert client.get(reverse("password_change")).status_code == 200
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302 and response["Location"] == reverse("account")
    assert not works(client, first) and not works(client, second)
    assert client.get(reverse("account")).status_code == 200  # still signed in


def test_a_wrong_old_password_changes_nothing(client, analyst):
    _, token = create_api_token(analyst, "one")
    client.force_login(analyst)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": "not-it",
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 200 and "old_password" in response.context["form"].errors
    assert works(client, token)


def test_a_password_set_anywhere_else_kills_the_tokens_too(client, analyst):
    _, token = create_api_token(analyst, "one")
    analyst.set_password(NEW_PASSWORD)  # as the admin or manage.py changepassword do
    analyst.save()
    assert not works(client, token)


def test_a_deactivated_users_tokens_stay_dead_when_they_come_back(client, analyst):
    _, token = create_api_token(analyst, "one")
    analyst.is_active = False
    analyst.save()
    analyst.is_active = True
    analyst.save()
    assert not works(client, token)


def test_signing_in_and_other_saves_keep_the_tokens(client, analyst):
    _, token = create_api_token(analyst, "one")
    assert client.login(username=analyst.username, password=PASSWORD)  # saves last_login
    analyst.first_name = "Ana"
    analyst.save()
    assert works(client, token)


def test_a_password_rehashed_at_sign_in_keeps_the_tokens(client, analyst, settings):
    """Signing in re-hashes a password whose hash has fewer rounds than the hasher's (each Django
    release raises them): the same password, so the tokens live on and nothing is recorded revoked."""
    _, token = create_api_token(analyst, "one")
    hash_before = analyst.password
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]  # more rounds than the tests'
    assert client.login(username=analyst.username, password=PASSWORD)
    analyst.refresh_from_db()
    assert analyst.password != hash_before and analyst.check_password(PASSWORD)  # re-hashed
    assert works(client, token)
    assert not AuditRecord.objects.filter(outcome="api_tokens_revoked").exists()


def test_a_password_made_unusable_kills_the_tokens_even_saved_alone(client, analyst):
    """Saved as a sign-in's re-hash is (the password field alone, no clear text), but it locks the
    password: that is a change, and the tokens die with it."""
    _, token = create_api_token(analyst, "one")
    analyst.set_unusable_password()
    analyst.save(update_fields=["password"])
    assert not works(client, token)


def test_the_account_page_is_in_every_roles_navigation(client, analyst, manager, admin_user):
    for user in (analyst, manager, admin_user):
        client.force_login(user)
        assert f'href="{reverse("account")}"' in client.get(reverse("home")).content.decode()
