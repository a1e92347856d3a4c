import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command

from core.roles import ROLES, roles_of


@pytest.fixture(autouse=True)
def scratch_credentials(settings, tmp_path):
    settings.CREDENTIALS_DIR = tmp_path / "credentials"
    return settings.CREDENTIALS_DIR


def seed(capsys):
    call_command("seed_demo")
    return capsys.readouterr().out


def test_the_lab_is_seeded_and_every_tool_server_gets_its_key(db, capsys, scratch_credentials):
    from toolserver.catalog import SERVERS
    from toolserver.lab.keys import hash_key
    from toolserver.lab.models import Host, LabKey

    out = seed(capsys)
    assert Host.objects.exists()
    for server in SERVERS:
        path = scratch_credentials / f"{server}.key"
        assert path.stat().st_mode & 0o077 == 0
        key = path.read_text()
        assert LabKey.objects.get(name=server, revoked_at__isnull=True).key_hash == hash_key(key)
        assert key not in out


def test_demo_users_get_random_passwords_printed_once(db, capsys, monkeypatch):
    monkeypatch.delenv("GATEHOUSE_DEMO_PASSWORD", raising=False)
    first = seed(capsys)
    passwords = dict(re.findall(r"^\s+(\w+)\s+password: (\S+)$", first, re.M))
    assert set(passwords) == set(ROLES)
    assert len(set(passwords.values())) == 3
    for username, password in passwords.items():
        user = authenticate(username=username, password=password)
        assert user is not None and roles_of(user) == {username}

    second = seed(capsys)
    assert "password:" not in second
    for password in passwords.values():
        assert password not in second


def test_demo_password_comes_from_the_environment(db, capsys, monkeypatch):
    monkeypatch.setenv("GATEHOUSE_DEMO_PASSWORD", "a-demo-password-for-the-lab")
    out = seed(capsys)
    assert "a-demo-password-for-the-lab" not in out
    assert authenticate(username="manager", password="a-demo-password-for-the-lab") is not None
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff and not admin.is_superuser


def test_the_lab_story_alert_is_received_once_and_its_investigation_queued(db, capsys):
    from investigations.models import Investigation

    first = seed(capsys)
    investigation = Investigation.objects.get()
    assert (investigation.alert.external_id, investigation.status) == ("LAB-SIEM-1001", "queued")
    assert f"Demo investigation: /investigations/{investigation.pk}/ (queued)" in first
    seed(capsys)
    assert Investigation.objects.get() == investigation


def test_each_demo_account_set_is_recorded_as_a_change_of_who_may_do_what(db, capsys, monkeypatch):
    from investigations.models import AuditRecord

    monkeypatch.setenv("GATEHOUSE_DEMO_PASSWORD", "demo-password-for-the-test-0451")
    seed(capsys)
    recorded = AuditRecord.objects.filter(kind=AuditRecord.Kind.ADMIN_CHANGE, outcome="demo_account_set")
    assert sorted(record.extra["after"]["user"] for record in recorded) == sorted(ROLES)
    assert "demo-password-for-the-test-0451" not in str(list(recorded.values()))


def test_no_demo_accounts_in_production_without_the_lab(db, settings):
    settings.PRODUCTION, settings.LAB_ENABLED = True, False
    with pytest.raises(CommandError, match="not in production mode without the lab"):
        call_command("seed_demo")
    assert not get_user_model().objects.filter(username__in=ROLES).exists()
