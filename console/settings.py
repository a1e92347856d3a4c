"""Django settings for Gatehouse.

Two modes from one file, chosen by the environment (README, "Configuration"):
- embedded default: no REDIS_URL. SQLite under the data directory (or at a sqlite:/// URL),
  an in-process Celery worker on the memory broker, the in-memory channel layer.
- production: DATABASE_URL (PostgreSQL) and REDIS_URL both set. Redis is the Celery broker,
  result backend and channel layer; workers run as `celery -A console worker`.
"""

import os
import secrets
import stat
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from csp.constants import NONE, SELF

from console.environment import (
    ConfigError,
    check_redis_url,
    database_from_url,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_mapping,
    env_networks,
    env_prices,
    env_rate,
    env_str,
    sqlite_database,
)
from core.roles import ROLES
from toolserver.catalog import SERVERS as TOOL_SERVERS
from toolserver.credentials import split_keys

BASE_DIR = Path(__file__).resolve().parent.parent

DATA_DIR = Path(env_str("GATEHOUSE_DATA_DIR") or BASE_DIR / "var")

DATABASE_URL = env_str("DATABASE_URL")
REDIS_URL = env_str("REDIS_URL")
DATABASES = {
    "default": database_from_url(
        DATABASE_URL,
        pool_size=env_int("GATEHOUSE_DB_POOL_SIZE", 10, minimum=1),
        pool_timeout_s=env_int("GATEHOUSE_DB_POOL_TIMEOUT_S", 10, minimum=1),
    )
    if DATABASE_URL
    else sqlite_database(DATA_DIR / "gatehouse.sqlite3")
}
PRODUCTION = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
# The PostgreSQL role the console, workers and beat connect as, given its rights after each migrate
# run by the owner (console/database.py). Set it where migrations run.
DB_RUNTIME_ROLE = env_str("GATEHOUSE_DB_RUNTIME_ROLE")
if DB_RUNTIME_ROLE and not DB_RUNTIME_ROLE.replace("_", "").isalnum():
    raise ConfigError("GATEHOUSE_DB_RUNTIME_ROLE", "expected a role name of letters, digits and underscores")
if PRODUCTION and not REDIS_URL:
    raise ConfigError("REDIS_URL", "required in production mode (DATABASE_URL is PostgreSQL)")
if REDIS_URL and not PRODUCTION:
    raise ConfigError("DATABASE_URL", "production mode (REDIS_URL is set) needs a postgres:// URL")
if not PRODUCTION:
    # Its own only: the database beside the keys holds sessions, second factors' keys and sealed credentials.
    DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    _data = DATA_DIR.stat()
    # Closed if open to others (an earlier version's, the umask's), unless another's or a shared /tmp.
    if _data.st_mode & 0o077 and _data.st_uid == os.getuid() and not _data.st_mode & stat.S_ISVTX:
        DATA_DIR.chmod(0o700)
    del _data
    DATABASES["default"]["TEST"] = {"NAME": DATA_DIR / "test.sqlite3"}


def _too_weak(key: str, minimum: int = 50) -> bool:
    return len(key) < minimum or len(set(key)) < 5


def _secret(variable: str, filename: str, *, required: bool = True, rotated: bool = False) -> str:
    """A secret from the environment; on the embedded default, generated once beside its database.
    `rotated`: comma-separated keys (the first in use, the others still accepted), each checked."""
    value = env_str(variable)
    if not value:
        if PRODUCTION and not required:
            return ""
        if PRODUCTION:
            raise ConfigError(variable, "required in production mode (50+ random characters)")
        path = DATA_DIR / filename
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(50))
        value = path.read_text().strip()
    keys = split_keys(value) if rotated else [value]
    if not keys or any(_too_weak(key) for key in keys):
        raise ConfigError(variable, "too weak: use 50 or more random characters" + (" for each key" if rotated else ""))
    return value


SECRET_KEY = _secret("GATEHOUSE_SECRET_KEY", "secret_key")
# Keys the hashes of sensitive tool arguments in the audit trail; never stored in the database.
AUDIT_HASH_KEY = _secret("GATEHOUSE_AUDIT_HASH_KEY", "audit_hash_key")
# Signs the audit chain's digest (Ed25519, derived with HKDF). Required in production, so it
# is never derived from anything on disk; on the embedded default it is derived from the audit
# hash key under its own label.
AUDIT_SIGNING_KEY = env_str("GATEHOUSE_AUDIT_SIGNING_KEY")
if PRODUCTION and not AUDIT_SIGNING_KEY:
    raise ConfigError("GATEHOUSE_AUDIT_SIGNING_KEY", "required in production mode (50+ random characters)")
AUDIT_SIGNING_KEY = AUDIT_SIGNING_KEY or f"derived:{AUDIT_HASH_KEY}"
if _too_weak(AUDIT_SIGNING_KEY):
    raise ConfigError("GATEHOUSE_AUDIT_SIGNING_KEY", "too weak: use 50 or more random characters")

DEBUG = env_bool("GATEHOUSE_DEBUG", False)
if PRODUCTION and DEBUG:  # DEBUG pages show settings, queries and source to anyone who hits an error
    raise ConfigError("GATEHOUSE_DEBUG", "must be off in production mode")
ALLOWED_HOSTS = env_list("GATEHOUSE_ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ConfigError("GATEHOUSE_ALLOWED_HOSTS", "required in production mode (the console's host names)")
CSRF_TRUSTED_ORIGINS = env_list("GATEHOUSE_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "guardian",
    "axes",
    "csp",  # its system checks flag settings in django-csp 3's old format
    "ninja",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "django_otp_webauthn",
    "toolserver",
    "toolserver.lab",
    "investigations",
    "console",  # last: its post_migrate keeps the roles' permissions for every app above
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # answers static files before anything below
    "console.middleware.NoStoreMiddleware",
    "console.middleware.ContentSecurityPolicyMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): the second factor of this session
    "console.middleware.SecondFactorGate",
    "console.middleware.IdleTimeout",
    "console.middleware.StepUpForChanges",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # turns a locked-out sign-in into the lockout page
    "console.middleware.ApiErrorsAsJson",
]

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.context_processors.navigation",
            ],
        },
    },
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "console.signin.SignInThrottle",  # first: a locked-out name or address is refused before its password is checked
    "console.signin.PasswordBackend",
    "console.sso.SsoBackend",  # signs in only from the OpenID Connect callback, and only when an issuer is set
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Local passwords: `on`, `admins` (break-glass: only local accounts holding the admin role, or
# superusers) or `off` (console.signin.PasswordBackend); single sign-on is console/sso.py.
PASSWORD_SIGNIN = env_choice("GATEHOUSE_PASSWORD_SIGNIN", "on", ("on", "admins", "off"))
# Single sign-on over OpenID Connect (console/sso.py, mozilla-django-oidc): on when an issuer is set.
OIDC_ISSUER = env_str("GATEHOUSE_OIDC_ISSUER").rstrip("/")
OIDC_RP_CLIENT_ID = env_str("GATEHOUSE_OIDC_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_str("GATEHOUSE_OIDC_CLIENT_SECRET")
if OIDC_ISSUER and not (OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET):
    raise ConfigError("GATEHOUSE_OIDC_CLIENT_ID", "an OIDC issuer needs its client id and GATEHOUSE_OIDC_CLIENT_SECRET")
OIDC_PROVIDER_NAME = env_str("GATEHOUSE_OIDC_PROVIDER_NAME", "your company's sign-in")
OIDC_RP_SIGN_ALGO = env_choice(
    "GATEHOUSE_OIDC_SIGN_ALGO", "RS256", ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
)
OIDC_RP_SCOPES = env_str("GATEHOUSE_OIDC_SCOPES", "openid email profile")
OIDC_USERNAME_CLAIM = env_str("GATEHOUSE_OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_GROUPS_CLAIM = env_str("GATEHOUSE_OIDC_GROUPS_CLAIM", "groups")
OIDC_ROLE_GROUPS = env_mapping("GATEHOUSE_OIDC_ROLE_GROUPS", ROLES)  # IdP group -> role
OIDC_TIMEOUT = env_int("GATEHOUSE_OIDC_TIMEOUT_S", 10, minimum=1)
# The authentication methods (the ID token's `amr`, RFC 8176: mfa, hwk, otp, ...) of which a sign-in or a
# step-up at the IdP must name one to count as a proof of presence. Empty: any fresh sign-in there counts.
OIDC_PRESENCE_AMR = env_list("GATEHOUSE_OIDC_PRESENCE_AMR", [])
OIDC_CLOCK_LEEWAY_S = 60  # clock skew tolerated on an ID token's exp and iat
OIDC_USE_PKCE = True
LOGIN_REDIRECT_URL_FAILURE = "/login/?sso=refused"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Sign-in throttling (django-axes, both the console's and the admin's sign-in): past this many
# failures for a user name, or from an address, within the cool-off, its sign-ins are refused for a while.
# Attempts are kept in the database, so every web process sees them; unlock with `manage.py axes_reset`.
AXES_FAILURE_LIMIT = env_int("GATEHOUSE_SIGNIN_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("GATEHOUSE_SIGNIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own, not the pair
# Not axes' reset on success, which clears every attempt of the name or the address that succeeded: signing
# in as oneself between guesses would clear the failures counted against another name from that address.
# A sign-in clears its own name's only (console.signin.logged_in).
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_DISABLE_ACCESS_LOG = True  # sign-ins are recorded once, in the audit trail (console.signin)
AXES_VERBOSE = False  # its start-up banner and per-attempt lines: the audit trail records sign-ins
GUARDIAN_RAISE_403 = True
ANONYMOUS_USER_NAME = None  # no object permissions for anonymous visitors

# The lab: a simulated SOC estate served at /lab/api/, the default backend of every tool server.
LAB_ENABLED = env_bool("GATEHOUSE_LAB", not PRODUCTION)
# The lab serves simulated tool backends and a fault page: never by accident in production, only
# with this explicit opt-in (a demo or the tests' production mode).
LAB_IN_PRODUCTION = env_bool("GATEHOUSE_LAB_IN_PRODUCTION", False)
if PRODUCTION and LAB_ENABLED and not LAB_IN_PRODUCTION:
    raise ConfigError("GATEHOUSE_LAB", "refused in production mode unless GATEHOUSE_LAB_IN_PRODUCTION=true")

# Tool servers (toolserver/): each server's backend and where its credential lives. The
# credential is read by the server's own process when it starts (toolserver.launch).
LAB_API_URL = env_str("GATEHOUSE_LAB_URL") or f"http://127.0.0.1:{env_int('PORT', 8000)}/lab/api"
# Seals the credentials an admin stores in the console (toolserver/credentials.py). Optional in
# production: without it, credentials are files in CREDENTIALS_DIR. Comma-separated to
# rotate it: the first seals, every one unseals.
CREDENTIALS_KEY = _secret("GATEHOUSE_CREDENTIALS_KEY", "credentials_key", required=False, rotated=True)
CREDENTIALS_DIR = Path(env_str("GATEHOUSE_CREDENTIALS_DIR") or DATA_DIR / "credentials")
TOOLSERVER_BACKENDS = {
    server: {"adapter": "lab", "url": LAB_API_URL, "credential": f"file:{CREDENTIALS_DIR / (server + '.key')}"}
    for server in TOOL_SERVERS
}
# Where tool servers may connect (toolserver/egress.py), besides the backends named above.
BACKEND_ALLOWED_HOSTS = env_list("GATEHOUSE_BACKEND_ALLOWED_HOSTS", [])
try:
    from toolserver.egress import parse as _parse_allowed_hosts

    _parse_allowed_hosts(BACKEND_ALLOWED_HOSTS)
except ValueError as exc:
    raise ConfigError("GATEHOUSE_BACKEND_ALLOWED_HOSTS", str(exc)) from None
# Calls per window per server, shared by all workers.
TOOLSERVER_RATE_LIMITS = {"default": (120, 60), "edr-response": (20, 60), "identity": (60, 60)}
TOOLSERVER_AUDIT_SINK = "investigations.audit.chain.record_tool_call"
# What a session not yet verified owes (core.sockets asks it without importing the console).
SECOND_FACTOR_OWED_BY = "console.mfa.owed_by"
# Whose session is signed out when idle (core.sockets asks it too).
SIGNED_OUT_WHEN_IDLE = "console.mfa.privileged"
# A running write (and an executing action) older than this was abandoned by a dead worker.
TOOLSERVER_WRITE_LEASE_S = env_int("GATEHOUSE_WRITE_LEASE_S", 30, minimum=1)  # renewed while it runs
TOOLSERVER_WRITE_WAIT_S = 30  # how long a repeat waits for the first call of its key
# Runs of an approved write whose answer was lost (each after the first sends it only once its backend said the
# one before had not happened) before it goes to a person: a backend that keeps failing is not tried forever.
TOOLSERVER_ANSWERS_LOST_BEFORE_A_PERSON = 3
TOOLSERVER_CALL_TIMEOUT_S = env_int("GATEHOUSE_TOOL_TIMEOUT_S", 30, minimum=1)
BACKEND_TIMEOUT_S = env_int("GATEHOUSE_BACKEND_TIMEOUT_S", 10, minimum=1)

# Investigations (investigations/): the model, and each investigation's budgets.
# With no ANTHROPIC_API_KEY the offline model answers inside the SDK (investigations/runs/offline_model/).
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL")  # blank: the SDK's default, Anthropic's API
MODEL = env_str("GATEHOUSE_MODEL", "claude-opus-5-5")  # the current Opus in the SDK's model list
MODEL_MAX_TOKENS = env_int("GATEHOUSE_MODEL_MAX_TOKENS", 4096, minimum=256)  # per model turn
MODEL_TIMEOUT_S = env_int("GATEHOUSE_MODEL_TIMEOUT_S", 120, minimum=5)
# USD per million tokens by kind (console.environment.PRICE_KINDS), for an investigation's estimated cost.
# Defaults: Anthropic's list prices as summarised in December 2026 (a 5-minute cache write is 1.25x input);
# check them against the pricing page. GATEHOUSE_MODEL_PRICES adds models or replaces these.
MODEL_PRICES = {
    "claude-opus-5-5": {
        "input": Decimal(4),
        "cache_write": Decimal(5),
        "cache_read": Decimal("0.2"),
        "output": Decimal(20),
    },
    "claude-sonnet-5-5": {
        "input": Decimal(2),
        "cache_write": Decimal("2.5"),
        "cache_read": Decimal("0.1"),
        "output": Decimal(10),
    },
} | env_prices("GATEHOUSE_MODEL_PRICES")
# Pauses between the offline model's streamed chunks, so the demo reads as live text.
OFFLINE_MODEL_DELAY_MS = env_int("GATEHOUSE_OFFLINE_MODEL_DELAY_MS", 0 if PRODUCTION else 25, minimum=0)
# And before each streamed answer, as a real model's turn takes seconds (bench/scale.py).
OFFLINE_TURN_DELAY_MS = env_int("GATEHOUSE_OFFLINE_TURN_DELAY_MS", 0, minimum=0)
INVESTIGATION_BUDGETS = {
    "tool_calls": env_int("GATEHOUSE_BUDGET_TOOL_CALLS", 30, minimum=1),
    "tokens": env_int("GATEHOUSE_BUDGET_TOKENS", 300_000, minimum=1000),
    "seconds": env_int("GATEHOUSE_BUDGET_SECONDS", 900, minimum=10),
}
# A worker renews its lease on a running investigation every third of this; one that stops
# renewing (killed) is replaced by the next sweep, which resumes from the last saved step.
INVESTIGATION_LEASE_S = env_int("GATEHOUSE_INVESTIGATION_LEASE_S", 60, minimum=1)
SWEEP_INTERVAL_S = env_int("GATEHOUSE_SWEEP_INTERVAL_S", 15, minimum=1)
# A database error that may pass (a pool timeout, a restart) hands the investigation back, and its task
# is tried again after this, doubled each time (5, 10, 20, 40, 80 s); past the last try it fails.
DB_RETRY_S = env_int("GATEHOUSE_DB_RETRY_S", 5, minimum=1)
DB_RETRIES = env_int("GATEHOUSE_DB_RETRIES", 5, minimum=0)
# Streamed text is saved and published at most this often per block: each piece is a transaction and a
# message to the page, and with hundreds of turns streaming in one worker they are most of its work
# (bench/scale.py); a quarter of a second still reads as live.
TEXT_FLUSH_MS = env_int("GATEHOUSE_TEXT_FLUSH_MS", 250, minimum=0)
# The reads one model turn asks for together are made at the same time, at most this many at once (each on a
# thread of its own, holding a database connection only while it writes its audit record); writes wait in order.
PARALLEL_READS = env_int("GATEHOUSE_PARALLEL_READS", 8, minimum=1)
ALERT_MAX_BYTES = 64 * 1024  # a larger alert body is refused with 413
# Per integration: requests to POST /api/alerts per window (shared by every web process through
# Redis in production), and investigations waiting for a worker; past either, 429.
# Sized for a storm (300 alerts of one noisy rule in a burst): grouping makes each joined alert one
# row, and the start cap per integration (Integration.starts_per_minute) is what guards the model.
INTAKE_RATE = env_rate("GATEHOUSE_INTAKE_RATE", (600, 60))
INTAKE_MAX_QUEUED = env_int("GATEHOUSE_INTAKE_MAX_QUEUED", 50, minimum=1)
# People's API tokens (investigations/tokens.py) stop working this long after they are made.
API_TOKEN_DAYS = env_int("GATEHOUSE_API_TOKEN_DAYS", 90, minimum=1)
# Second factor and step-up (README "Second factor and step-up"). Admins and anyone who may approve
# a write must enrol a second factor (TOTP or recovery codes, django-otp) and give it after their
# password; anyone who has one enrolled is asked for it whatever this says.
MFA_REQUIRED = env_bool("GATEHOUSE_MFA_REQUIRED", True)
# A decision on a write and every admin change needs a proof of presence (a code) newer than this;
# 0 turns step-up off (a lab, or the tests that are not about it).
STEP_UP_MINUTES = env_int("GATEHOUSE_STEP_UP_MINUTES", 5, minimum=0)
# Approvers and admins are signed out after this long without a request; 0: only the session's lifetime.
IDLE_MINUTES = env_int("GATEHOUSE_IDLE_MINUTES", 30, minimum=0)
# An API token scoped to decide (a chat bot approving) lives this long, not API_TOKEN_DAYS.
DECIDE_TOKEN_HOURS = env_int("GATEHOUSE_DECIDE_TOKEN_HOURS", 24, minimum=1)
OTP_TOTP_ISSUER = "Gatehouse"
# Passkeys and security keys (django-otp-webauthn) as a second factor after the password, never in
# place of it. The relying party is the console's host (checked against ALLOWED_HOSTS) unless
# GATEHOUSE_WEBAUTHN_RP_ID names a parent domain; the origin is the console's own (console.mfa.PasskeyHelper).
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False
OTP_WEBAUTHN_RP_NAME = "Gatehouse"
WEBAUTHN_RP_ID = env_str("GATEHOUSE_WEBAUTHN_RP_ID")
OTP_WEBAUTHN_RP_ID_CALLABLE = "console.mfa.relying_party_id"
OTP_WEBAUTHN_HELPER_CLASS = "console.mfa.PasskeyHelper"
# Its check wants a fixed list of origins: the helper allows the console's own, from the checked Host.
SILENCED_SYSTEM_CHECKS = ["otp_webauthn.E030"]

# Approval channels (investigations/approvals/channels/): the enabled ones, by name.
APPROVAL_CHANNELS = env_list("GATEHOUSE_APPROVAL_CHANNELS", ["email"])
# Approvers are emailed about a request still undecided after this long (0: never).
APPROVAL_NOTIFY_AFTER_S = env_int("GATEHOUSE_APPROVAL_NOTIFY_MINUTES", 10, minimum=0) * 60
CONSOLE_URL = env_str("GATEHOUSE_CONSOLE_URL", f"http://127.0.0.1:{env_int('PORT', 8000)}").rstrip(
    "/"
)  # for links in messages
# The signed-webhook channel: its secret (signs both ways), where it posts changes (optional), how old
# a callback may be, and which platform user ids act as which Gatehouse users ("U123=ana,U456=bob").
APPROVAL_WEBHOOK_SECRET = env_str("GATEHOUSE_APPROVAL_WEBHOOK_SECRET")
APPROVAL_WEBHOOK_URL = env_str("GATEHOUSE_APPROVAL_WEBHOOK_URL")
if APPROVAL_WEBHOOK_URL and not APPROVAL_WEBHOOK_URL.startswith(("https://", "http://")):
    raise ConfigError("GATEHOUSE_APPROVAL_WEBHOOK_URL", "expected an http(s):// URL")
APPROVAL_WEBHOOK_MAX_AGE_S = env_int("GATEHOUSE_APPROVAL_WEBHOOK_MAX_AGE_S", 300, minimum=1)
APPROVAL_WEBHOOK_USERS = {}
for _link in env_list("GATEHOUSE_APPROVAL_WEBHOOK_USERS", []):
    _platform_user, _, _username = (part.strip() for part in _link.partition("="))
    if not (_platform_user and _username):
        raise ConfigError("GATEHOUSE_APPROVAL_WEBHOOK_USERS", f"expected platform-id=username pairs, got {_link!r}")
    APPROVAL_WEBHOOK_USERS[_platform_user] = _username
if "webhook" in APPROVAL_CHANNELS and _too_weak(APPROVAL_WEBHOOK_SECRET, minimum=32):
    raise ConfigError(
        "GATEHOUSE_APPROVAL_WEBHOOK_SECRET", "required for the webhook channel: 32 or more random characters"
    )
EMAIL_BACKEND = env_str(
    "GATEHOUSE_EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("GATEHOUSE_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("GATEHOUSE_EMAIL_PORT", 25)
EMAIL_USE_TLS = env_bool("GATEHOUSE_EMAIL_TLS", False)
DEFAULT_FROM_EMAIL = env_str("GATEHOUSE_EMAIL_FROM", "gatehouse@localhost")
EMAIL_TIMEOUT = (
    10  # each step of an SMTP exchange (Django sets none): a mail server that stops answering fails the send
)

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("GATEHOUSE_STATIC_ROOT") or BASE_DIR / "var" / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the source folders too, so the embedded default needs no collectstatic.
WHITENOISE_USE_FINDERS = True

# Transport security. On by default in production; GATEHOUSE_HTTPS=false is for a console
# served over plain HTTP on a trusted host (tests, a lab).
HTTPS = env_bool("GATEHOUSE_HTTPS", PRODUCTION)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
# __Host-: the browser keeps such a cookie only if Secure, for this host alone (no Domain) and
# path /, so a sibling subdomain cannot plant or overwrite it.
SESSION_COOKIE_NAME = "__Host-sessionid" if HTTPS else "sessionid"
CSRF_COOKIE_NAME = "__Host-csrftoken" if HTTPS else "csrftoken"
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("GATEHOUSE_HSTS_SECONDS", 31536000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS and env_bool("GATEHOUSE_HSTS_PRELOAD", True)
# Behind a proxy, uvicorn takes the scheme (X-Forwarded-Proto) and the client's address (X-Forwarded-For)
# from the proxies below and no one else (manage.py serve); Django reads no forwarded header itself.
BEHIND_PROXY = env_bool("GATEHOUSE_BEHIND_PROXY", False)
# Whose X-Forwarded-For and X-Forwarded-Proto are believed, behind a proxy (addresses or networks): the
# client's address that sign-in throttling and the trail see. Another's would be the proxy's own address for
# everyone (five wrong passwords then pause every sign-in) or, trusted from anyone, a client's invention.
TRUSTED_PROXIES = env_networks("GATEHOUSE_TRUSTED_PROXIES", ["127.0.0.1", "::1"])
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("GATEHOUSE_SESSION_SECONDS", 8 * 3600, minimum=300)
CSRF_COOKIE_HTTPONLY = True
# How long a websocket trusts its last check of who is listening; a sign-out, deactivation or
# role or grant change closes it at once anyway (core.sockets).
SOCKET_RECHECK_SECONDS = env_int("GATEHOUSE_SOCKET_RECHECK_SECONDS", 3)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Error reports (email to ADMINS, DEBUG pages) mask every setting that holds an address with
# credentials in it: *_URL, the channel layer's and Celery's Redis.
DEFAULT_EXCEPTION_REPORTER_FILTER = "console.errors.ReporterFilter"
# Content-Security-Policy (django-csp 4's format): the console's own scripts, styles and images
# only; no inline script, style or handler anywhere (templates/ and static/ keep to that). The
# console's websocket origin is added to connect-src per request (console/middleware.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
    }
}
# Powerful browser features the console never uses, switched off for it and anything it embeds.
PERMISSIONS_POLICY = {
    # Passkeys (console/mfa.py) on the console's own pages only.
    "publickey-credentials-get": ["self"],
    "publickey-credentials-create": ["self"],
} | {
    feature: []
    for feature in (
        "accelerometer",
        "ambient-light-sensor",
        "autoplay",
        "bluetooth",
        "browsing-topics",
        "camera",
        "display-capture",
        "encrypted-media",
        "geolocation",
        "gyroscope",
        "hid",
        "idle-detection",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "screen-wake-lock",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 256 * 1024

# Celery: Redis in production; the memory broker, polled often, for the in-process worker.
if PRODUCTION:
    check_redis_url(REDIS_URL)
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    # Longer than any task may run, so an unacknowledged task is not handed out twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 times reads out after 5 s, the same 5 s channels_redis blocks waiting
            # for a message: an idle websocket would be dropped (channels_redis#422).
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
else:
    CELERY_BROKER_URL = "memory://localhost/"
    CELERY_RESULT_BACKEND = "cache+memory://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {"polling_interval": 0.01}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = 1800
CELERY_TASK_SOFT_TIME_LIMIT = 1700
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A worker is one process whose threads each run one investigation: an investigation is nearly all
# waiting on the model or a tool, and a waiting thread holds no database connection (core/db.py), so
# one process holds hundreds in flight within its pool. `--pool`/`--concurrency` given to celery win.
CELERY_WORKER_POOL = "threads"
CELERY_WORKER_CONCURRENCY = env_int("GATEHOUSE_WORKER_CONCURRENCY", 200, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "resume-investigations": {"task": "investigations.tasks.sweep_investigations", "schedule": float(SWEEP_INTERVAL_S)},
    "expire-and-resume-actions": {"task": "investigations.tasks.sweep_actions", "schedule": float(SWEEP_INTERVAL_S)},
}
CELERY_BEAT_SCHEDULER = "celery.beat:Scheduler"  # kept in memory: a sweep needs no schedule file
EMBEDDED_WORKER_CONCURRENCY = env_int("GATEHOUSE_EMBEDDED_WORKERS", 4, minimum=1)

LOG_LEVEL = env_str("GATEHOUSE_LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
    raise ConfigError("GATEHOUSE_LOG_LEVEL", "expected DEBUG, INFO, WARNING or ERROR")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {
        "one_line_refusals": {"()": "console.logs.OneLineRefusals"},
        "redact_tokens": {"()": "console.logs.RedactTokens"},
        "one_line": {"()": "console.logs.OneLineArguments"},
    },
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_tokens"]}},
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        # The pool retries an unreachable database in the background, a line per try; whoever waits
        # for a connection gets the error (503 over the API, one line at start).
        "psycopg.pool": {"level": "ERROR"},
        "django.request": {
            "filters": ["one_line_refusals", "redact_tokens", "one_line"]
        },  # 4xx: one line, no traceback
        # uvicorn's request log has a handler of its own (set by uvicorn.run, which keeps this filter):
        # a token in a URL (Splunk's) is cut before any handler sees it.
        "uvicorn.access": {"filters": ["redact_tokens", "one_line"]},
        # The API's error lines name the request's path, which a client chose (a worker's log, by contrast,
        # passes a traceback on purpose: it keeps its lines).
        "console.middleware": {"filters": ["one_line"]},
        "toolserver.lab.api": {"filters": ["one_line"]},  # its crash line names a path the model chose
    },
}
