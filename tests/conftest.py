import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import global_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Group
from django.test import override_settings

from core.roles import ADMIN, ANALYST, MANAGER
from investigations.intake import services as intake
from tests import flushing
from tests.support import ConsoleProcess, console_env, database_url_of, story_alert
from toolserver.catalog import SERVERS
from toolserver.ratelimit import get_rate_limiter

PASSWORD = "correct-horse-battery-staple"
DATABASE_FIXTURES = {
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
    "live_server",
}


def pytest_collection_modifyitems(config, items):
    """In production mode, the tests of an `any_mode` module that use no database are left to the
    embedded run: nothing they do reaches PostgreSQL or Redis, so a second run repeats the first."""
    from django.conf import settings

    if not settings.PRODUCTION:
        return

    def uses_a_database(item) -> bool:
        return bool(item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(item.fixturenames))

    once = {item for item in items if item.get_closest_marker("any_mode") and not uses_a_database(item)}
    if once:
        config.hook.pytest_deselected(items=list(once))
        items[:] = [item for item in items if item not in once]


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """pbkdf2_sha256 at 1,000 rounds, not Django's 1,000,000 (0.23 s a hash here, paid by every user a
    test makes and every sign-in): the count is written in each hash, so a console process checks these
    as it checks any, and upgrades them at the first sign-in as it would an old hash."""

    iterations = 1000


@pytest.fixture(scope="session", autouse=True)
def _quick_password_hashing():
    hashers = [f"{__name__}.QuickPBKDF2PasswordHasher"]
    hashers += [path for path in global_settings.PASSWORD_HASHERS if not path.endswith(".PBKDF2PasswordHasher")]
    with override_settings(PASSWORD_HASHERS=hashers):
        yield


@pytest.fixture(scope="session", autouse=True)
def _flush_cheaply():
    """A `transactional_db` test's flush deletes rows and copies back the content types and permissions
    instead of having Django write them again (tests/flushing.py)."""
    with flushing.installed():
        yield


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database as pytest-django makes it, flushed once as Django does: the content types and
    permissions that leaves are what each later flush copies back (tests/flushing.py)."""
    with django_db_blocker.unblock():
        flushing.keep_baseline()


@pytest.fixture(autouse=True)
def _second_factor_off_unless_asked(request, settings):
    """The second factor and step-up are on by default (console/settings.py); tests about something else
    sign people in with a password only and decide without a step-up, as GATEHOUSE_MFA_REQUIRED=false and
    GATEHOUSE_STEP_UP_MINUTES=0 allow. Tests marked `mfa` keep the defaults (tests/console/test_mfa.py)."""
    if request.node.get_closest_marker("mfa") is None:
        settings.MFA_REQUIRED = False
        settings.STEP_UP_MINUTES = 0
        settings.IDLE_MINUTES = 0


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


@pytest.fixture
def fresh_rates(db):
    """Each integration's window starts empty: the embedded mode's limiter lives in this process and
    the ids of a rolled-back test's integrations come again."""
    created = []
    real_create = intake.create_integration

    def create(*args, **kwargs):
        integration, token = real_create(*args, **kwargs)
        get_rate_limiter().reset(intake.rate_bucket(integration))
        created.append(integration)
        return integration, token

    yield create
    for integration in created:
        get_rate_limiter().reset(intake.rate_bucket(integration))


@pytest.fixture
def make_investigation(db):
    """An alert and its investigation, saved directly: no worker is asked to run it."""
    from django.utils import timezone

    from investigations.models import Alert, Investigation

    def make(external_id: str = "TEST-1", **fields) -> Investigation:
        alert = Alert.objects.create(
            source="test", external_id=external_id, title="Test alert", severity="high", observed_at=timezone.now()
        )
        return Investigation.objects.create(
            alert=alert,
            model="gatehouse-offline-1",
            budget_tool_calls=10,
            budget_tokens=10_000,
            budget_seconds=60,
            **fields,
        )

    return make


@pytest.fixture(scope="session")
def live_console(django_db_setup, django_db_blocker, lab_credentials):
    """The real console (`manage.py serve`) in a subprocess, on this run's test database.

    It serves the lab, and its tool servers (those of its embedded worker) reach that lab with
    this run's credentials. Tests that use it must commit their data: use `transactional_db`.
    """
    from django.db import connection

    env = console_env(
        DATABASE_URL=database_url_of(connection.settings_dict),
        GATEHOUSE_CREDENTIALS_DIR=str(lab_credentials[0]),
        GATEHOUSE_OFFLINE_MODEL_DELAY_MS="0",
        GATEHOUSE_SWEEP_INTERVAL_S="3600",  # only at its start: tests here run their investigations themselves
    )
    console = ConsoleProcess(env)
    yield console
    console.stop()


@pytest.fixture
def vault_adapter():
    """A vendor adapter with declared parameters (tests/toolserver/vault.py), registered as the
    intel server's "vault" for this test only."""
    from tests.toolserver.vault import VaultIntel
    from toolserver.adapters.registry import registry

    registry.register("intel", "vault")(VaultIntel)
    yield VaultIntel
    registry.unregister("intel", "vault")


@pytest.fixture
def splunk_api():
    """Splunk's REST API as a recorded stand-in on a loopback port (tests/toolserver/siem_stand_in.py)."""
    from tests.toolserver.siem_stand_in import SplunkStandIn

    stand_in = SplunkStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture
def elastic_api():
    """Elasticsearch's search API as a recorded stand-in on a loopback port (tests/toolserver/siem_stand_in.py)."""
    from tests.toolserver.siem_stand_in import ElasticStandIn

    stand_in = ElasticStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture
def slapd(tmp_path):
    """A real OpenLDAP slapd of this test's own, on a loopback port, loaded with people and a
    service account (tests/toolserver/slapd.py); stopped, with its process group, after the test."""
    from tests.toolserver.slapd import Slapd

    folder = tmp_path / "slapd"
    folder.mkdir()
    directory = Slapd(folder)
    yield directory
    directory.stop()


@pytest.fixture
def identity_on_slapd(slapd, admin_user, settings):
    """The identity server pointed at `slapd` as an admin points it (console.manage.administration):
    the ldap adapter, its URL and parameters, the service account's bind password as its credential."""
    from console.manage import administration
    from toolserver.models import ToolServer

    settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{slapd.port}"]
    identity = ToolServer.objects.get(name="identity")
    administration.update_server(identity, admin_user, {"adapter": "ldap", "url": slapd.url, "params": slapd.params()})
    administration.set_credential(identity, admin_user, secret=slapd.service_password)
    return slapd


@pytest.fixture
def falcon():
    """A CrowdStrike Falcon API stand-in on loopback (tests/toolserver/vendor_standins.py) with the
    lab's phished host on it; its API client secret is unique to the test."""
    from tests.toolserver.vendor_standins import FalconStandIn
    from toolserver.lab.estate import PHISHED_HOST

    stand_in = FalconStandIn(secrets.token_urlsafe(32), (PHISHED_HOST,))
    yield stand_in
    stand_in.close()


@pytest.fixture
def jira():
    """A Jira Cloud API stand-in on loopback (tests/toolserver/vendor_standins.py), project SEC; its
    API token is unique to the test."""
    from tests.toolserver.vendor_standins import JiraStandIn

    stand_in = JiraStandIn(secrets.token_urlsafe(32))
    yield stand_in
    stand_in.close()


@dataclass
class Lab:
    api_url: str
    credentials_dir: Path
    keys: dict[str, str]

    def environment(self) -> dict[str, str]:
        """What a separate worker process needs to reach this lab with these credentials."""
        return {"GATEHOUSE_LAB_URL": self.api_url, "GATEHOUSE_CREDENTIALS_DIR": str(self.credentials_dir)}


@pytest.fixture
def misp_server():
    """A stand-in of MISP's REST API serving its documented responses, of this test's own, on a
    loopback port (tests/toolserver/misp_server.py); stopped after the test."""
    from tests.toolserver.misp_server import MispStandIn

    server = MispStandIn()
    yield server
    server.close()


@pytest.fixture(scope="session")
def lab_credentials(tmp_path_factory):
    """One key per server for the whole run, written where each server's launcher reads it.

    Fixed for the session, so the long-lived server processes survive from test to test.
    """
    directory = tmp_path_factory.mktemp("credentials")
    directory.chmod(0o700)
    keys = {server: f"lab_test_{server}_{secrets.token_urlsafe(24)}" for server in SERVERS}
    for server, key in keys.items():
        path = directory / f"{server}.key"
        path.write_text(key)
        path.chmod(0o600)
    return directory, keys


@pytest.fixture
def estate_copies(django_db_setup, django_db_blocker):
    """A seed of the lab's estate, at most tests/seeded_estate.py's FRESH_S old, for `seeded_estate.seed()`
    to copy back; made before the test's own transaction begins (ask for it before `db`)."""
    from tests import seeded_estate

    with django_db_blocker.unblock():
        seeded_estate.refresh()


@pytest.fixture
def lab(estate_copies, transactional_db, live_console, lab_credentials, settings):
    from tests import seeded_estate
    from toolserver.lab import faults
    from toolserver.lab.keys import SERVER_SCOPES, hash_key
    from toolserver.lab.models import LabKey

    directory, keys = lab_credentials
    seeded_estate.seed()
    for server, key in keys.items():
        LabKey.objects.create(name=server, key_hash=hash_key(key), scopes=SERVER_SCOPES[server])
    lab = Lab(api_url=f"{live_console.url}/lab/api", credentials_dir=directory, keys=keys)
    settings.TOOLSERVER_BACKENDS = {
        server: {"adapter": "lab", "url": lab.api_url, "credential": f"file:{directory / (server + '.key')}"}
        for server in SERVERS
    }
    settings.CREDENTIALS_DIR = directory
    settings.BACKEND_TIMEOUT_S = 2  # a lab "timeout" fault outlasts it
    limiter = get_rate_limiter()
    for server in SERVERS:
        limiter.reset(server)
    yield lab
    faults.clear()


# -- the lab's stories, investigated on the offline model ----------------------------------------
@pytest.fixture
def settings_offline(settings):
    """The offline model, unpaced: what the tests run on."""
    settings.ANTHROPIC_API_KEY = ""
    settings.OFFLINE_MODEL_DELAY_MS = 0
    return settings


@pytest.fixture
def received(lab, settings_offline):
    """Receive a lab story's alert: (alert, investigation), queued."""
    from investigations.intake.services import receive_alert

    def receive(external_id: str, **overrides):
        result = receive_alert(story_alert(external_id, **overrides))
        return result.alert, result.investigation

    return receive


@pytest.fixture
def waiting(received):
    """The phishing story's investigation, suspended on its pending request to isolate WS-FIN-07."""
    from investigations.runs import agent

    _, investigation = received("LAB-SIEM-1001")
    agent.run(investigation.pk)
    investigation.refresh_from_db()
    assert investigation.status == "waiting"
    return investigation, investigation.action_requests.get(state="pending", tool="isolate_host")
