"""Configuration from environment variables, and the start-up checks that go with it.

Every variable the console reads is read here (README, "Configuration"). A bad value raises
ConfigError naming the variable; the entry points turn that into one line on stderr.
"""

import ipaddress
import os
import sys
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote, urlsplit


class ConfigError(Exception):
    """A configuration variable is missing, malformed or points at something unreachable."""

    def __init__(self, variable: str, problem: str):
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name)
    if not raw:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(name, f"expected true or false, got {raw!r}")


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {value}")
    return value


def env_rate(name: str, default: tuple[int, int]) -> tuple[int, int]:
    """A rate as CALLS/SECONDS, e.g. 60/60: (calls, seconds), both at least 1."""
    raw = env_str(name)
    if not raw:
        return default
    calls, slash, seconds = raw.partition("/")
    try:
        rate = (int(calls), int(seconds))
    except ValueError:
        rate = None
    if not slash or rate is None or min(rate) < 1:
        raise ConfigError(name, f"expected CALLS/SECONDS, e.g. 60/60, got {raw!r}")
    return rate


def env_list(name: str, default: list[str]) -> list[str]:
    raw = env_str(name)
    if not raw:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str, default: list[str]) -> list[str]:
    """A comma-separated list of addresses or networks (10.0.0.1, 10.0.0.0/8, ::1)."""
    found = env_list(name, default)
    for item in found:
        try:
            ipaddress.ip_network(item)
        except ValueError:
            raise ConfigError(
                name, f"expected addresses or networks, e.g. 172.30.53.1,10.0.0.0/8; got {item!r}"
            ) from None
    return found


def env_mapping(name: str, allowed_values: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE,... with each VALUE one of `allowed_values` (e.g. IdP group names to roles)."""
    mapping = {}
    for entry in env_list(name, []):
        key, equals, value = entry.rpartition("=")
        if not equals or not key.strip() or value.strip() not in allowed_values:
            raise ConfigError(name, f"expected NAME=VALUE with VALUE one of {', '.join(allowed_values)}, got {entry!r}")
        mapping[key.strip()] = value.strip()
    return mapping


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    by_lower = {choice.lower(): choice for choice in choices}
    if value.lower() not in by_lower:
        raise ConfigError(name, f"expected one of {', '.join(choices)}, got {value!r}")
    return by_lower[value.lower()]


SQLITE_OPTIONS = {
    # The embedded worker thread and the web server write at the same time: WAL lets
    # readers proceed, IMMEDIATE takes the write lock up front instead of failing late.
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}


PRICE_KINDS = ("input", "cache_write", "cache_read", "output")


def env_prices(name: str) -> dict[str, dict[str, Decimal]]:
    """Model prices in USD per million tokens, as MODEL=INPUT/CACHE_WRITE/CACHE_READ/OUTPUT,... ."""
    prices = {}
    for entry in env_list(name, []):
        model, equals, figures = entry.partition("=")
        try:
            values = [Decimal(figure) for figure in figures.split("/")]
        except InvalidOperation:
            values = []
        if (
            not equals
            or not model.strip()
            or len(values) != len(PRICE_KINDS)
            or any(not (v.is_finite() and v >= 0) for v in values)
        ):
            raise ConfigError(name, f"expected MODEL=INPUT/CACHE_WRITE/CACHE_READ/OUTPUT in $/MTok, got {entry!r}")
        prices[model.strip()] = dict(zip(PRICE_KINDS, values, strict=True))
    return prices


def sqlite_database(path) -> dict:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": path, "OPTIONS": dict(SQLITE_OPTIONS)}


def database_from_url(url: str, *, pool_size: int = 10, pool_timeout_s: int = 10) -> dict:
    """Django DATABASES entry for postgres://user:password@host:port/name or sqlite:///path.

    PostgreSQL connections come from a bounded pool per process (psycopg's, through Django): a
    request or task borrows one and gives it back when it ends, so a burst of N requests needs
    pool_size connections, not N; past pool_timeout_s waiting for one, the caller gets 503.
    """
    parts = urlsplit(url)
    _refuse_unencoded_password("DATABASE_URL", parts)
    if parts.scheme == "sqlite":
        path = unquote(parts.path[1:])  # sqlite:////abs/path -> /abs/path
        if not path.startswith("/"):
            raise ConfigError("DATABASE_URL", "expected sqlite:////absolute/path/to/file.sqlite3")
        return sqlite_database(path)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ConfigError("DATABASE_URL", "expected postgres://user:password@host:port/name")
    name = unquote(parts.path.lstrip("/"))
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("DATABASE_URL", "the port is not a number") from None
    if not parts.hostname or not name:
        raise ConfigError("DATABASE_URL", "expected postgres://user:password@host:port/name")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname,
        "PORT": str(port or 5432),
        # Django's ASGI handler gives every request a thread of its own: each borrows a pooled
        # connection for the request and returns it after (a pool needs CONN_MAX_AGE 0).
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"connect_timeout": 5, "pool": {"min_size": 1, "max_size": pool_size, "timeout": pool_timeout_s}},
    }


def _refuse_unencoded_password(name: str, parts) -> None:
    """A password's "/", "?" or "#" ends the host early, and what of the password follows an "@" in it
    would be read, and named in messages, as the host (or the database's name). Only a URL with a user's
    part can have one: a SQLite path, or a host with no password, may hold an "@" (/home/jdoe@corp/...)."""
    if "@" in parts.netloc and "@" in parts.path + parts.query + parts.fragment:
        raise ConfigError(name, "percent-encode the password's / ? # and @, and any @ after the host (%2F %3F %23 %40)")


def check_redis_url(url: str) -> str:
    parts = urlsplit(url)
    _refuse_unencoded_password("REDIS_URL", parts)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise ConfigError("REDIS_URL", "expected redis://host:port/db")
    try:
        _ = parts.port  # reading it raises ValueError when it is not a number
    except ValueError:
        raise ConfigError("REDIS_URL", "the port is not a number") from None
    return url


def describe_endpoint(url: str) -> str:
    """host:port of a URL, for messages: never the credentials in it."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def preflight() -> None:
    """Reach the database and Redis once, so a wrong address fails at start, by name.

    Runs in a thread of its own: ASGI servers import the app inside their event loop, where
    Django refuses synchronous database access.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(_preflight).result()


def database_problem() -> str | None:
    """Why the database cannot be reached (its first line), or None.

    One connection of its own, not the pool's: a pool keeps retrying in the background and, once its
    timeout passes, says only that it waited.
    """
    from django.db import OperationalError, connection

    try:
        if connection.vendor == "postgresql":
            connection.Database.connect(**connection.get_connection_params()).close()
        else:
            connection.ensure_connection()
            connection.close()
    except (OperationalError, connection.Database.Error) as exc:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return None


def _preflight() -> None:
    from django.conf import settings

    problem = database_problem()
    if problem:
        raise ConfigError("DATABASE_URL", f"cannot connect to the database ({problem})")
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ConfigError(
                "REDIS_URL", f"cannot reach Redis at {describe_endpoint(settings.REDIS_URL)} ({exc})"
            ) from None
        finally:
            client.close()


def exit_on_config_error(error: ConfigError) -> None:
    sys.stderr.write(f"gatehouse: configuration error: {error}\n")
    sys.stderr.flush()
    raise SystemExit(2)
