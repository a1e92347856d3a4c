import re

from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from console.roles import ROLES, roles_of


def seed(capsys):
    call_command("seed_demo")
    return capsys.readouterr().out


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
