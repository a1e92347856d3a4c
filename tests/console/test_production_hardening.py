"""Production refuses DEBUG and an unintended lab; error reports mask addresses; __Host- cookies
under HTTPS; compose publishes on loopback; /healthz names no exception class (tests/console/test_healthz.py) (issue 14, item 7)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.test import RequestFactory
from django.views.debug import ExceptionReporter

from tests.console.test_start_errors import assert_one_line_naming, production_env
from tests.support import ROOT, free_port, listening, run_manage, stop_process, wait_until

SHOW_SETTINGS = "from django.conf import settings as s; print(s.LAB_ENABLED, s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME)"


def shown_settings(**changes) -> list[str]:
    """LAB_ENABLED and the two cookie names of a production console started with these changes."""
    result = run_manage("shell", "--verbosity", "0", "-c", SHOW_SETTINGS, env=production_env(**changes))
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_production_refuses_debug():
    assert_one_line_naming(run_manage("check", env=production_env(GATEHOUSE_DEBUG="true")), "GATEHOUSE_DEBUG")


def test_production_refuses_the_lab_without_the_opt_in():
    env = production_env(GATEHOUSE_LAB="true", GATEHOUSE_LAB_IN_PRODUCTION=None)
    result = run_manage("check", env=env)
    assert_one_line_naming(result, "GATEHOUSE_LAB")
    assert "GATEHOUSE_LAB_IN_PRODUCTION=true" in result.stderr


def test_production_serves_the_lab_with_the_opt_in_and_not_by_default():
    plain = {"GATEHOUSE_HTTPS": "false"}
    assert shown_settings(GATEHOUSE_LAB="true", GATEHOUSE_LAB_IN_PRODUCTION="true", **plain)[0] == "True"
    assert shown_settings(GATEHOUSE_LAB=None, GATEHOUSE_LAB_IN_PRODUCTION=None, **plain)[0] == "False"


def test_cookies_are_named_host_only_under_https():
    no_lab = {"GATEHOUSE_LAB": None, "GATEHOUSE_LAB_IN_PRODUCTION": None}
    assert shown_settings(GATEHOUSE_HTTPS="true", **no_lab)[1:] == ["__Host-sessionid", "__Host-csrftoken"]
    # A browser drops a __Host- cookie that is not Secure: plain names on plain HTTP.
    assert shown_settings(GATEHOUSE_HTTPS="false", **no_lab)[1:] == ["sessionid", "csrftoken"]


def error_report() -> tuple[str, str]:
    """The text and HTML report of an error, from a frame holding nothing secret of its own."""
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        reporter = ExceptionReporter(RequestFactory().get("/"), *sys.exc_info())
    return reporter.get_traceback_text(), reporter.get_traceback_html()


def test_an_error_report_masks_every_url_and_the_redis_settings(settings):
    password = "zq-redis-password-5521"
    redis_url = f"redis://:{password}@redis.internal:6379/0"
    settings.REDIS_URL = redis_url
    settings.DATABASE_URL = f"postgres://gate:{password}@db.internal:5432/gatehouse"
    settings.LAB_API_URL = f"https://lab:{password}@lab.internal/api"
    settings.CELERY_BROKER_URL = redis_url
    settings.CELERY_RESULT_BACKEND = redis_url
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [{"address": redis_url}]}}
    }
    text, html = error_report()
    assert "REDIS_URL" in text and "CHANNEL_LAYERS" in text  # the settings are in the report...
    assert password not in text and password not in html  # ...masked
    assert "redis.internal" not in text and "redis.internal" not in html


def test_compose_publishes_the_web_port_on_loopback_only():
    compose = yaml.safe_load(Path(ROOT, "compose.yaml").read_text())
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert published and all(str(port).startswith("127.0.0.1:") for port in published)


def test_compose_trusts_the_forwarded_headers_of_its_networks_gateway_alone():
    """The host's proxy reaches the web container from the network's gateway: that address, and no other."""
    compose = yaml.safe_load(Path(ROOT, "compose.yaml").read_text())
    (network,) = compose["networks"]["default"]["ipam"]["config"]
    web = compose["services"]["web"]["environment"]
    assert web["GATEHOUSE_BEHIND_PROXY"].endswith(":-true}")
    assert web["GATEHOUSE_TRUSTED_PROXIES"] == f"${{GATEHOUSE_TRUSTED_PROXIES:-{network['gateway']}}}"


def test_compose_runs_a_worker_that_holds_hundreds_of_investigations_in_flight():
    """Its command, read as celery reads it: a `--concurrency 4` there (it wins over the settings) made
    compose's worker run four investigations at once, a thread each, whatever GATEHOUSE_WORKER_CONCURRENCY said."""
    from celery.bin.base import CLIContext
    from celery.bin.worker import worker
    from celery.concurrency.thread import TaskPool
    from django.conf import settings

    from console.celery import app

    command = yaml.safe_load(Path(ROOT, "compose.yaml").read_text())["services"]["worker"]["command"]
    assert command[:4] == ["celery", "-A", "console", "worker"]
    context = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    options = worker.make_context("worker", command[4:], obj=context).params
    assert options["pool"] is TaskPool
    assert options["concurrency"] == settings.CELERY_WORKER_CONCURRENCY == 200


def test_compose_migrates_as_the_owner_and_runs_everything_else_as_the_runtime_role():
    services = yaml.safe_load(Path(ROOT, "compose.yaml").read_text())["services"]
    migrate = services["migrate"]["environment"]
    assert (
        migrate["DATABASE_URL"].startswith("postgres://gatehouse:")
        and migrate["GATEHOUSE_DB_RUNTIME_ROLE"] == "gatehouse_app"
    )
    for name in ("web", "worker", "beat"):
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgres://gatehouse_app:"), name
        assert "migrate" not in " ".join(services[name]["command"]), name


COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def interpolated(value: str, environment: dict[str, str]) -> str:
    """A compose value as compose reads it: ${VAR:?message} refuses to start (KeyError here) without VAR."""

    def one(match: re.Match) -> str:
        name, kind, rest = match.groups()
        if environment.get(name):
            return environment[name]
        if kind == "?":
            raise KeyError(name)
        return rest if kind == "-" else ""

    return COMPOSE_VARIABLE.sub(one, value)


def test_compose_requires_a_redis_password_and_every_service_connects_with_it():
    """Redis is the broker and the channel layer: without a password, whoever reaches it queues tasks and
    sends the websockets' groups messages of their own."""
    services = yaml.safe_load(Path(ROOT, "compose.yaml").read_text())["services"]
    password = "9f2c4e0b7a1d"
    environment = {"GATEHOUSE_REDIS_PASSWORD": password}
    redis = services["redis"]
    command = [interpolated(part, environment) for part in redis["command"]]
    assert command[0] == "redis-server" and "--requirepass" in command, command
    assert command[command.index("--requirepass") + 1] == password
    assert interpolated(redis["environment"]["REDISCLI_AUTH"], environment) == password  # the healthcheck's ping

    clients = {name: service for name, service in services.items() if "redis" in service.get("depends_on", {})}
    assert {"web", "worker", "beat"} <= set(clients)
    for name, service in services.items():
        url = service.get("environment", {}).get("REDIS_URL")
        assert url or name not in clients, name
        if url:
            parts = urlsplit(interpolated(url, environment))
            assert (parts.password, parts.hostname, parts.port) == (password, "redis", 6379), name
            with pytest.raises(KeyError):  # no password, no start
                interpolated(url, {})
    with pytest.raises(KeyError):
        interpolated(" ".join(redis["command"]), {})


@pytest.mark.parametrize(
    "variable, url",
    [
        ("REDIS_URL", "redis://:Wint3r@vault-7/q9z@127.0.0.1:{port}/0"),
        ("DATABASE_URL", "postgres://gatehouse:Wint3r@vault-7/q9z@127.0.0.1:{port}/gatehouse"),
    ],
)
def test_a_password_that_would_end_the_host_early_is_refused_without_showing_any_of_it(variable, url):
    """Unencoded, a password's "/" ends the host, and what of it followed an "@" was named as the host in
    the console's "cannot reach ... at" line."""
    url = url.format(port=free_port())
    result = run_manage("serve", "--port", str(free_port()), env=production_env(**{variable: url}))
    assert_one_line_naming(result, variable)
    assert not any(part in result.stderr for part in ("Wint3r", "vault-7", "q9z")), result.stderr


REDIS_PASSWORD = "c41d9e7f03ab"


@pytest.fixture
def redis_with_a_password():
    """A Redis of this test's own that requires a password, as compose's does: its port."""
    server = shutil.which("redis-server")
    assert server, "redis-server: the suite's Redis is one (scripts/services.sh starts it)"
    port = free_port()
    arguments = ["--port", str(port), "--bind", "127.0.0.1", "--requirepass", REDIS_PASSWORD, "--save", ""]
    process = subprocess.Popen([server, *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: listening(port) or process.poll() is not None, what="redis-server")
        assert process.poll() is None, "redis-server did not start"
        yield port
    finally:
        stop_process(process)


SIGNED_IN = """
import asyncio
from console import health
from console.celery import app
from console.environment import preflight
preflight()
print(asyncio.run(health.check_all()))
print(app.connection().as_uri(), app.backend.as_uri())  # what a worker's and beat's banner show
"""


def test_a_console_signs_in_to_redis_with_the_password_in_its_url_and_never_shows_it(redis_with_a_password):
    port = redis_with_a_password
    signed_in = run_manage(
        "shell",
        "--verbosity",
        "0",
        "-c",
        SIGNED_IN,
        env=production_env(REDIS_URL=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"),
    )
    assert signed_in.returncode == 0, signed_in.stderr
    health, uris = signed_in.stdout.strip().splitlines()
    assert "'broker': 'ok', 'channel_layer': 'ok'" in health
    assert uris == f"redis://:**@127.0.0.1:{port}/0 redis://:**@127.0.0.1:{port}/0"

    for url in (f"redis://127.0.0.1:{port}/0", f"redis://:wrong-8e1f@127.0.0.1:{port}/0"):
        refused = run_manage("serve", "--port", str(free_port()), env=production_env(REDIS_URL=url))
        assert_one_line_naming(refused, "REDIS_URL")
        assert f"127.0.0.1:{port}" in refused.stderr and "wrong-8e1f" not in refused.stderr
