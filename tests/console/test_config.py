from decimal import Decimal

import pytest

from console.environment import ConfigError, database_from_url, env_bool, env_int, env_prices, env_rate

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run


def test_postgres_url_becomes_a_database_entry():
    entry = database_from_url("postgres://gate:p%40ss@db.internal:6543/gatehouse")
    assert entry["ENGINE"] == "django.db.backends.postgresql"
    assert (entry["USER"], entry["PASSWORD"], entry["HOST"], entry["PORT"], entry["NAME"]) == (
        "gate",
        "p@ss",
        "db.internal",
        "6543",
        "gatehouse",
    )


def test_sqlite_url_becomes_a_database_entry():
    entry = database_from_url("sqlite:////tmp/console.sqlite3")
    assert entry["ENGINE"] == "django.db.backends.sqlite3"
    assert entry["NAME"] == "/tmp/console.sqlite3"


@pytest.mark.parametrize(
    "url",
    ["mysql://root@localhost/db", "postgres://localhost", "postgres://db:notaport/name", "sqlite://"],
)
def test_malformed_database_url_names_the_variable(url):
    with pytest.raises(ConfigError) as caught:
        database_from_url(url)
    assert caught.value.variable == "DATABASE_URL"


def test_malformed_database_url_does_not_echo_the_password():
    with pytest.raises(ConfigError) as caught:
        database_from_url("mysql://root:hunter2-secret@localhost/db")
    assert "hunter2-secret" not in str(caught.value)


def test_booleans_and_numbers_are_checked(monkeypatch):
    monkeypatch.setenv("GATEHOUSE_X", "maybe")
    with pytest.raises(ConfigError, match="GATEHOUSE_X"):
        env_bool("GATEHOUSE_X", False)
    monkeypatch.setenv("GATEHOUSE_X", "off")
    assert env_bool("GATEHOUSE_X", True) is False
    monkeypatch.setenv("GATEHOUSE_X", "12x")
    with pytest.raises(ConfigError, match="GATEHOUSE_X"):
        env_int("GATEHOUSE_X", 1)
    monkeypatch.setenv("GATEHOUSE_X", "0")
    with pytest.raises(ConfigError, match="at least 1"):
        env_int("GATEHOUSE_X", 5, minimum=1)


@pytest.mark.parametrize("raw", ["60", "60/", "/60", "0/60", "60/0", "a/b", "60/60/60"])
def test_a_rate_is_calls_per_seconds_and_a_bad_one_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("GATEHOUSE_INTAKE_RATE", " 30/10 ")
    assert env_rate("GATEHOUSE_INTAKE_RATE", (60, 60)) == (30, 10)
    monkeypatch.delenv("GATEHOUSE_INTAKE_RATE")
    assert env_rate("GATEHOUSE_INTAKE_RATE", (60, 60)) == (60, 60)
    monkeypatch.setenv("GATEHOUSE_INTAKE_RATE", raw)
    with pytest.raises(ConfigError, match="GATEHOUSE_INTAKE_RATE: expected CALLS/SECONDS"):
        env_rate("GATEHOUSE_INTAKE_RATE", (60, 60))


@pytest.mark.parametrize(
    "raw", ["claude-x", "claude-x=1/2/3", "=1/2/3/4", "claude-x=1/2/a/4", "claude-x=1/-2/3/4", "m=NaN/1/1/1"]
)
def test_model_prices_are_four_figures_per_model_and_a_bad_one_names_the_variable(monkeypatch, raw):
    monkeypatch.setenv("GATEHOUSE_MODEL_PRICES", "claude-x=4/5/0.2/20, claude-y=1/1.25/0.1/5")
    prices = env_prices("GATEHOUSE_MODEL_PRICES")
    assert prices["claude-x"] == {
        "input": Decimal(4),
        "cache_write": Decimal(5),
        "cache_read": Decimal("0.2"),
        "output": Decimal(20),
    }
    assert prices["claude-y"]["cache_write"] == Decimal("1.25")
    monkeypatch.setenv("GATEHOUSE_MODEL_PRICES", raw)
    with pytest.raises(ConfigError, match="GATEHOUSE_MODEL_PRICES: expected MODEL=INPUT/CACHE_WRITE"):
        env_prices("GATEHOUSE_MODEL_PRICES")


def test_a_url_with_no_password_may_hold_an_at_sign_after_its_host():
    """The unencoded-password rule is for a user's part cut short: a SQLite file under an AD-joined home
    (/home/jdoe@corp.example/...) or a PostgreSQL host with no password in its URL starts as it is."""
    entry = database_from_url("sqlite:////home/jdoe@corp.example/gatehouse/console.sqlite3")
    assert str(entry["NAME"]) == "/home/jdoe@corp.example/gatehouse/console.sqlite3"
    assert (
        database_from_url("postgres://db.corp:5432/gatehouse?sslrootcert=/home/jdoe@corp/ca.pem")["HOST"] == "db.corp"
    )
