"""Who-can-do-what changes only on recorded paths (issue 14 item 2, architecture rule 11).

The admin role used to hold `auth.change_user` in the Django admin unrestricted: it could tick
Superuser on itself, add itself to a role and set other people's passwords, none of it in the chain;
and it could grant itself the right to approve a write and then decide it.
"""

import io

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from console.manage import administration
from core.roles import ADMIN, ANALYST
from investigations.models import ApiToken, AuditRecord, Integration, ToolPolicy
from investigations.tokens import create_api_token


def admin_changes(outcome: str) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(kind=AuditRecord.Kind.ADMIN_CHANGE, outcome=outcome).order_by("seq"))


def user_form(user, **changes) -> dict:
    return {
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_active": "on",
    } | changes


@pytest.mark.django_db
def test_the_admin_role_cannot_make_itself_superuser_or_give_itself_a_role_in_the_django_admin(
    admin_client, admin_user
):
    analysts = Group.objects.get(name=ANALYST)
    url = reverse("admin:auth_user_change", args=[admin_user.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="is_superuser"' not in page and 'name="groups"' not in page and 'name="user_permissions"' not in page

    response = admin_client.post(
        url, user_form(admin_user, is_superuser="on", is_staff="on", groups=[analysts.pk], first_name="Ada")
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    admin_user.refresh_from_db()
    assert not admin_user.is_superuser
    assert set(admin_user.groups.values_list("name", flat=True)) == {ADMIN}
    assert admin_user.first_name == "Ada"  # what the role may change, changed
    (record,) = admin_changes("django_admin_changed")
    assert record.actor == "user:ada" and record.extra["after"]["objects"] == ["ada"]


@pytest.mark.django_db
def test_the_admin_role_cannot_rename_a_person_to_take_over_what_names_them(
    admin_client, admin_user, make_user, settings
):
    """A chat id is linked to a user name (GATEHOUSE_APPROVAL_WEBHOOK_USERS), and the trail names people by
    theirs: renaming herself away and an analyst to her old name put the admin's own chat id on the
    analyst's account, approving writes as them, a right nobody granted her."""
    from investigations.approvals import services as approvals
    from investigations.approvals.channels.base import Identity
    from investigations.approvals.channels.webhook import WebhookChannel

    settings.APPROVAL_WEBHOOK_USERS = {"U-ADA": "ada", "U-ANA": "ana"}
    ana = make_user("ana", ANALYST)
    hers = Identity(platform_user="U-ADA", request_id=1, decision="approve")
    assert not approvals.may_approve(admin_user, "isolate_host")
    for person, name in ((admin_user, "ada-2"), (ana, "ada")):  # herself away, then the analyst to her name
        was = person.username
        url = reverse("admin:auth_user_change", args=[person.pk])
        assert 'name="username"' not in admin_client.get(url).content.decode()
        assert admin_client.post(url, user_form(person, username=name, first_name="Renamed")).status_code == 302
        person.refresh_from_db()
        assert (person.username, person.first_name) == (was, "Renamed")  # the other names, changed
    assert WebhookChannel().user_for(hers) == admin_user


@pytest.mark.django_db
def test_the_admin_role_cannot_set_another_persons_password(admin_client, make_user):
    other = make_user("ana", ANALYST)
    url = reverse("admin:auth_user_password_change", args=[other.pk])
    assert admin_client.get(url).status_code == 403
    response = admin_client.post(url, {"password1": "a-new-password-0123", "password2": "a-new-password-0123"})
    assert response.status_code == 403
    other.refresh_from_db()
    assert other.check_password("correct-horse-battery-staple")


@pytest.mark.django_db
def test_switching_a_person_off_in_the_django_admin_is_one_chained_record(admin_client, make_user):
    other = make_user("ana", ANALYST)
    before = AuditRecord.objects.count()
    response = admin_client.post(
        reverse("admin:auth_user_change", args=[other.pk]),
        {k: v for k, v in user_form(other).items() if k != "is_active"},
    )
    assert response.status_code == 302
    other.refresh_from_db()
    assert not other.is_active
    (record,) = admin_changes("django_admin_changed")
    assert record.extra["after"]["model"] == "auth.user" and "Active" in record.extra["after"]["change"]
    assert AuditRecord.objects.count() == before + 1


@pytest.mark.django_db
def test_revoking_an_integration_in_the_django_admin_is_recorded(admin_client, admin_user):
    integration = Integration.objects.create(name="siem-test", token_prefix="ghi_x", token_hash="0" * 64)
    response = admin_client.post(
        reverse("admin:investigations_integration_changelist"),
        {"action": "revoke", "_selected_action": [integration.pk]},
    )
    assert response.status_code == 302
    integration.refresh_from_db()
    assert integration.revoked_at is not None
    (record,) = admin_changes("django_admin_changed")
    assert record.extra["after"] == {
        "model": "investigations.integration",
        "objects": ["siem-test"],
        "change": "revoked",
    }


@pytest.mark.django_db
def test_an_admin_cannot_grant_themself_a_right_but_another_admin_can(admin_client, admin_user, make_user):
    policy = ToolPolicy.objects.get(tool="isolate_host")
    with pytest.raises(administration.Refused, match="A grant to yourself needs another admin"):
        administration.grant(admin_user, "approve_tool", policy, admin_user)
    own_team = Group.objects.create(name="ada-team")
    admin_user.groups.add(own_team)
    response = admin_client.post(
        reverse("manage:grant"), {"permission": "approve_tool", "object": "isolate_host", "holder": "group:ada-team"}
    )
    assert response.status_code == 400 and "A grant to yourself needs another admin" in response.content.decode()
    assert not admin_user.has_perm("investigations.approve_tool", policy)
    assert admin_changes("permission_granted") == []

    second = make_user("bea", ADMIN, is_staff=True)
    administration.grant(second, "approve_tool", policy, admin_user)
    assert admin_user.has_perm("investigations.approve_tool", policy)
    assert [record.actor for record in admin_changes("permission_granted")] == ["user:bea"]


# -- the People page: roles change only here, recorded ------------------------------------------------
def role_change(client, action: str, username: str, role: str):
    return client.post(reverse(f"manage:{action}_role"), {"username": username, "role": role})


@pytest.mark.django_db
def test_a_role_granted_and_revoked_on_the_people_page_is_one_chained_record_each(admin_client, make_user):
    make_user("ana")
    response = role_change(admin_client, "grant", "ana", ANALYST)
    assert response.status_code == 302
    assert "Granted analyst for ana." in admin_client.get(response.url).content.decode()
    (granted,) = admin_changes("role_granted")
    assert (granted.actor, granted.extra["after"]) == ("user:ada", {"user": "ana", "role": ANALYST})
    assert role_change(admin_client, "revoke", "ana", ANALYST).status_code == 302
    (revoked,) = admin_changes("role_revoked")
    assert revoked.extra["after"] == {"user": "ana", "role": ANALYST}
    assert not Group.objects.get(name=ANALYST).user_set.filter(username="ana").exists()


@pytest.mark.django_db
def test_nobody_changes_their_own_roles(admin_client, admin_user):
    response = role_change(admin_client, "grant", "ada", ANALYST)
    assert (
        response.status_code == 400 and "A change of your own roles needs another admin." in response.content.decode()
    )
    assert role_change(admin_client, "revoke", "ada", ADMIN).status_code == 400
    assert set(admin_user.groups.values_list("name", flat=True)) == {ADMIN}
    assert admin_changes("role_granted") == admin_changes("role_revoked") == []


@pytest.mark.django_db
def test_the_admin_role_needs_a_second_admin_to_confirm_it(admin_client, admin_user, make_user):
    make_user("ana", ANALYST)
    assert role_change(admin_client, "grant", "ana", ADMIN).status_code == 302
    assert not Group.objects.get(name=ADMIN).user_set.filter(username="ana").exists()  # asked, not given
    again = role_change(admin_client, "grant", "ana", ADMIN)
    assert again.status_code == 400 and "another admin confirms it" in again.content.decode()

    second = make_user("bea", ADMIN, is_staff=True)
    administration.grant_role(second, Group.objects.get(name=ADMIN).user_set.model.objects.get(username="ana"), ADMIN)
    assert Group.objects.get(name=ADMIN).user_set.filter(username="ana").exists()
    assert [r.extra["after"] for r in admin_changes("role_requested")] == [{"user": "ana", "role": ADMIN}]
    (granted,) = admin_changes("role_granted")
    assert (granted.actor, granted.extra["after"]) == (
        "user:bea",
        {"user": "ana", "role": ADMIN, "requested_by": "ada"},
    )


@pytest.mark.django_db
def test_only_admins_reach_the_people_page(client, make_user):
    client.force_login(make_user("max", "manager"))
    assert client.get(reverse("manage:people")).status_code == 403
    assert role_change(client, "grant", "max", ADMIN).status_code == 403
    assert (
        role_change(client, "grant", "nobody-here", "superuser").status_code == 403
    )  # refused before the input is read


@pytest.mark.django_db
def test_the_admin_role_creates_a_person_with_no_password_it_could_sign_in_with(admin_client):
    """Else one admin makes a person whose password they know, gives them the analyst role (no second admin
    needed) and approves writes as them: two such people pass four-eyes."""
    page = admin_client.get(reverse("admin:auth_user_add")).content.decode()
    assert 'name="password1"' not in page and 'name="usable_password"' not in page
    response = admin_client.post(
        reverse("admin:auth_user_add"),
        {
            "username": "sock",
            "usable_password": "true",
            "password1": "Kn0wn-to-the-admin!",
            "password2": "Kn0wn-to-the-admin!",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    sock = User.objects.get(username="sock")
    assert not sock.has_usable_password() and not sock.check_password("Kn0wn-to-the-admin!")
    (record,) = admin_changes("django_admin_added")
    assert record.actor == "user:ada" and record.extra["after"]["objects"] == ["sock"]


# -- access that ends is recorded too -------------------------------------------------------------------
@pytest.mark.django_db
def test_tokens_revoked_by_their_owner_or_with_a_deactivation_are_recorded(client, make_user):
    ana = make_user("ana", ANALYST)
    first, _ = create_api_token(ana, "bot")
    create_api_token(ana, "script")
    client.force_login(ana)
    assert client.post(reverse("revoke_api_token", args=[first.pk])).status_code == 302
    (by_owner,) = admin_changes("api_tokens_revoked")
    assert (by_owner.actor, by_owner.extra["after"]) == (
        "user:ana",
        {"user": "ana", "tokens": [first.token_prefix], "because": "revoked by its owner"},
    )

    ana.is_active = False
    ana.save()
    automatic = admin_changes("api_tokens_revoked")[1]
    assert automatic.actor == "system" and automatic.extra["after"]["because"] == "the account was deactivated"
    assert len(automatic.extra["after"]["tokens"]) == 1


@pytest.mark.django_db
def test_tokens_made_and_revoked_with_the_command_are_recorded_naming_them_by_prefix_only(make_user):
    from django.core.management import call_command

    make_user("ana", ANALYST)
    call_command("api_tokens", "create", "ana", "--name", "chat bot", "--decide", stdout=io.StringIO())
    (made,) = admin_changes("api_token_created")
    api_token = ApiToken.objects.get()
    assert made.actor == "manage.py api_tokens"
    assert made.extra["after"] == {
        "user": "ana",
        "token": api_token.token_prefix,
        "name": "chat bot",
        "decide": True,
        "expires_at": api_token.expires_at.isoformat(),
    }
    call_command("api_tokens", "revoke", str(api_token.pk), stdout=io.StringIO())
    call_command("api_tokens", "revoke", str(api_token.pk), stdout=io.StringIO())  # changes nothing, records nothing
    (revoked,) = admin_changes("api_tokens_revoked")
    assert (revoked.actor, revoked.extra["after"]) == (
        "manage.py api_tokens",
        {"user": "ana", "tokens": [api_token.token_prefix], "because": "revoked with manage.py api_tokens"},
    )


@pytest.mark.django_db
def test_revoking_an_integration_with_the_command_is_recorded():
    from django.core.management import call_command

    from investigations.intake.services import create_integration

    create_integration("siem-prod")
    call_command("integrations", "revoke", "siem-prod")
    call_command("integrations", "revoke", "siem-prod")  # a second revoke changes nothing, records nothing
    (record,) = admin_changes("integration_revoked")
    assert record.actor == "manage.py integrations" and record.extra["after"]["integration"] == "siem-prod"
