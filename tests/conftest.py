import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from console.roles import ADMIN, ANALYST, MANAGER
from tests.support import ConsoleProcess, console_env, database_url_of

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def make_user(db):
    """Create a user holding the given roles (groups); the password is PASSWORD."""

    def make(username: str, *roles: str, **fields):
        user = get_user_model().objects.create_user(username=username, password=PASSWORD, **fields)
        user.groups.set(Group.objects.filter(name__in=roles))
        return user

    return make


@pytest.fixture
def analyst(make_user):
    return make_user("ana", ANALYST)


@pytest.fixture
def manager(make_user):
    return make_user("max", MANAGER)


@pytest.fixture
def admin_user(make_user):
    return make_user("ada", ADMIN, is_staff=True)


@pytest.fixture(scope="session")
def live_console(django_db_setup, django_db_blocker):
    """The real console (`manage.py serve`) in a subprocess, on this run's test database.

    Tests that use it must commit their data: mark them django_db(transaction=True).
    """
    from django.db import connection

    env = console_env(DATABASE_URL=database_url_of(connection.settings_dict))
    console = ConsoleProcess(env)
    yield console
    console.stop()
