"""Wrong or missing configuration in production mode stops the console with one clear line."""

import subprocess
import sys

import pytest

from tests.support import ROOT, console_env, free_port, run_manage

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run

PRODUCTION = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "GATEHOUSE_SECRET_KEY": "k7#Qz!9vLm2@Xr4$Tn8^Wp1&Yb6*Hd3(Jf5)Gs0_Ac-Ue+Oi=Ky",
    "GATEHOUSE_AUDIT_HASH_KEY": "Zq8#mV2!pL5@wR9$xT3^nB7&kD1*hF4(jG6)sA0_cE-uI+oY=t",
    "GATEHOUSE_AUDIT_SIGNING_KEY": "Pw3$eR7!tY1@uI5#oP9%aS2^dF6&gH0*jK4(lZ8)xC-vB+nM=q",
    "GATEHOUSE_ALLOWED_HOSTS": "gatehouse.example.org",
}


def production_env(**changes):
    return console_env(**{**PRODUCTION, **changes})


def assert_one_line_naming(result, variable):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"gatehouse: configuration error: {variable}:")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "changes, variable",
    [
        ({"DATABASE_URL": "mysql://root@127.0.0.1/test"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://127.0.0.1:notaport/test"}, "DATABASE_URL"),
        ({"REDIS_URL": ""}, "REDIS_URL"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"GATEHOUSE_SECRET_KEY": ""}, "GATEHOUSE_SECRET_KEY"),
        ({"GATEHOUSE_SECRET_KEY": "short"}, "GATEHOUSE_SECRET_KEY"),
        ({"GATEHOUSE_SECRET_KEY": "ab" * 40}, "GATEHOUSE_SECRET_KEY"),
        ({"GATEHOUSE_ALLOWED_HOSTS": ""}, "GATEHOUSE_ALLOWED_HOSTS"),
        ({"GATEHOUSE_AUDIT_HASH_KEY": ""}, "GATEHOUSE_AUDIT_HASH_KEY"),
        ({"GATEHOUSE_AUDIT_SIGNING_KEY": ""}, "GATEHOUSE_AUDIT_SIGNING_KEY"),
        ({"GATEHOUSE_AUDIT_SIGNING_KEY": "a" * 50}, "GATEHOUSE_AUDIT_SIGNING_KEY"),
        # Each key of a rotation: the first seals every credential stored from then on.
        ({"GATEHOUSE_CREDENTIALS_KEY": "k," + PRODUCTION["GATEHOUSE_SECRET_KEY"]}, "GATEHOUSE_CREDENTIALS_KEY"),
        ({"GATEHOUSE_BACKEND_ALLOWED_HOSTS": "http://siem.example"}, "GATEHOUSE_BACKEND_ALLOWED_HOSTS"),
        ({"GATEHOUSE_DEBUG": "perhaps"}, "GATEHOUSE_DEBUG"),
        ({"GATEHOUSE_APPROVAL_CHANNELS": "email,webhook"}, "GATEHOUSE_APPROVAL_WEBHOOK_SECRET"),
        (
            {"GATEHOUSE_APPROVAL_CHANNELS": "webhook", "GATEHOUSE_APPROVAL_WEBHOOK_SECRET": "short"},
            "GATEHOUSE_APPROVAL_WEBHOOK_SECRET",
        ),
        ({"GATEHOUSE_APPROVAL_WEBHOOK_USERS": "U123=ana,U456"}, "GATEHOUSE_APPROVAL_WEBHOOK_USERS"),
    ],
)
def test_malformed_setting_fails_at_start(changes, variable):
    assert_one_line_naming(run_manage("check", env=production_env(**changes)), variable)


def test_unreachable_database_fails_migrate_with_one_line_without_waiting_the_pools_timeout():
    unreachable = f"postgres://postgres@127.0.0.1:{free_port()}/test"
    # Through the pool, migrate waited its timeout before it failed: a timeout longer than run_manage's bound.
    result = run_manage("migrate", env=production_env(DATABASE_URL=unreachable, GATEHOUSE_DB_POOL_TIMEOUT_S="600"))
    assert_one_line_naming(result, "DATABASE_URL")
    assert "connection refused" in result.stderr.lower()


def test_unreachable_redis_fails_serve_with_one_line():
    result = run_manage(
        "serve", "--port", str(free_port()), env=production_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    )
    assert_one_line_naming(result, "REDIS_URL")


def test_unreachable_database_fails_serve_with_one_line():
    result = run_manage(
        "serve",
        "--port",
        str(free_port()),
        env=production_env(DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/x"),
    )
    assert_one_line_naming(result, "DATABASE_URL")


def test_unreachable_redis_fails_the_worker_with_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "console", "worker", "--pool", "solo", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=production_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "gatehouse: configuration error: REDIS_URL: cannot reach Redis at 127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_embedded_defaults_data_folder_is_its_owners_alone(tmp_path):
    """Beside the generated keys, its database holds sessions, second factors' keys and sealed credentials:
    a folder made readable by everyone (an earlier version's, or the user's umask) is closed at start."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    env = console_env(DATABASE_URL="", REDIS_URL="", GATEHOUSE_DATA_DIR=str(data))
    assert run_manage("check", env=env).returncode == 0
    assert data.stat().st_mode & 0o777 == 0o700


def test_a_shared_folder_given_as_the_data_folder_is_left_as_it_is(tmp_path):
    """A sticky, world-writable folder (/tmp, say) is everyone's: closing it would lock the others out."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    env = console_env(DATABASE_URL="", REDIS_URL="", GATEHOUSE_DATA_DIR=str(shared))
    assert run_manage("check", env=env).returncode == 0
    assert shared.stat().st_mode & 0o7777 == 0o1777


def test_a_credentials_key_rotation_is_read_as_the_credentials_read_it():
    """Spaces and an empty entry (a trailing comma) are no key, there as here: only the keys are judged."""
    strong = PRODUCTION["GATEHOUSE_SECRET_KEY"]
    assert run_manage("check", env=production_env(GATEHOUSE_CREDENTIALS_KEY=f" {strong} ,")).returncode == 0
