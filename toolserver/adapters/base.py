"""The contract of a backend adapter: one interface per capability, the shapes it returns, the
failures it may raise, and the parameters it may declare.

An adapter subclasses its capability's interface (SiemBackend, EdrBackend, ...), implements every
abstract method, and is registered for a server (toolserver.adapters.registry), which refuses it at
import when it does not. Each method returns one of our shapes (adapters.shapes, named on the
interface's method with @returns): a dict built by shaped(), or a Page built by page_of() (which
leaves out an item that does not fit and says the page is truncated), never a backend's raw
payload. Every transport or protocol failure becomes one of the failures below:
BackendError (with a BackendFailure), TargetNotFound, BackendRefused, or CannotTell.

An adapter that needs more than a URL and one credential (a Splunk index, an Okta org, a second
secret) declares `params`: each a Param, secret or not. An admin sets them on the server's page;
the server's process gets them in its constructor (`params=`), the secret ones only there
(architecture rules 1 and 10). This module runs in the server process without Django.
"""

import functools
import inspect
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from pydantic import ValidationError

from core.inputs import each_string
from toolserver import schemas
from toolserver.adapters.shapes import (
    MAX_STRING,
    AccountChange,
    Comment,
    Connection,
    Host,
    Indicator,
    Isolation,
    Login,
    Process,
    Shape,
    SiemEvent,
    Ticket,
    User,
)
from toolserver.envelope import BackendFailure
from toolserver.redaction import MIN_PART, Redactor

__all__ = [
    "Backend",
    "BackendError",
    "BackendFailure",
    "BackendRefused",
    "CannotTell",
    "EdrBackend",
    "EdrResponseBackend",
    "IdentityBackend",
    "IntelBackend",
    "Page",
    "Param",
    "ParamError",
    "Shape",
    "SiemBackend",
    "TargetNotFound",
    "TicketingBackend",
    "WriteContext",
    "page_of",
    "returns",
    "shaped",
]


# -- the failures an adapter may raise ------------------------------------------------------------
class BackendError(Exception):
    """The backend failed in one of the known ways. Its message never holds a credential."""

    def __init__(self, failure: BackendFailure, *, retry_after_s: int | None = None, status: int | None = None):
        super().__init__(f"backend failure: {failure}")
        self.failure = failure
        self.retry_after_s = retry_after_s
        self.status = status


class TargetNotFound(Exception):
    def __init__(self, target: str):
        super().__init__(f"not found: {target}")
        self.target = target


class CannotTell(Exception):
    """The backend cannot say whether a write already happened (Backend.already_done)."""


class BackendRefused(Exception):
    """The backend refused the request as invalid (a 400): the arguments need changing."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


# -- what an adapter returns ----------------------------------------------------------------------
@dataclass(frozen=True)
class Page:
    items: list[dict]
    truncated: bool


@dataclass(frozen=True)
class WriteContext:
    """What a write carries besides its arguments: who asked, for which alert, under which key."""

    idempotency_key: str
    trigger: str
    correlation_id: str


def shaped(shape: type[Shape], body) -> dict:
    """`body` as `shape` (unknown keys dropped, each string cut to MAX_STRING characters);
    BackendError(MALFORMED) when it does not fit."""
    try:
        fitted = shape.model_validate(body).model_dump()
    except ValidationError:
        raise BackendError(BackendFailure.MALFORMED) from None
    return each_string(fitted, lambda text: text[:MAX_STRING])


def page_of(shape: type[Shape], items, *, truncated: bool) -> Page:
    """A page of `shape`s. An item that does not fit its shape is left out and the page said to be
    truncated, so one odd record does not hide the others; BackendError(MALFORMED) when `items` is not
    a list, or none of its items fits (not the backend's answer at all)."""
    if not isinstance(items, list):
        raise BackendError(BackendFailure.MALFORMED)
    fitting = []
    for item in items:
        try:
            fitting.append(shaped(shape, item if isinstance(item, dict) else None))
        except BackendError:
            continue
    if items and not fitting:
        raise BackendError(BackendFailure.MALFORMED)
    return Page(items=fitting, truncated=truncated or len(fitting) < len(items))


def returns(shape: type[Shape], *, page: bool = False) -> Callable:
    """Names, on an interface's method, the shape it returns (a Page of them when `page`)."""

    def mark(method):
        method.returns = (shape, page)
        return method

    return mark


# -- what an adapter may declare besides its URL and credential -------------------------------------
_PARAM_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


class ParamError(ValueError):
    """Parameters an adapter cannot start with. The message names parameters, never a value."""


@dataclass(frozen=True)
class Param:
    """One parameter an adapter declares: an admin sets it on the server's page.

    A secret one is sealed like the credential, never shown again, and reaches only the server's
    own process. `pattern` (a regular expression the whole value must match) and `validator` (a
    callable raising ValueError with a message for the admin) check a value; a message never
    repeats it.
    """

    name: str
    label: str
    required: bool = False
    secret: bool = False
    help: str = ""
    pattern: str = ""
    validator: Callable[[str], None] | None = None
    max_length: int = 500

    def check(self, value: str) -> str:
        """The value as stored (stripped); ValueError saying what is wrong with it, without it."""
        value = value.strip()
        if not value:
            if self.required:
                raise ValueError(f"{self.label} is required.")
            return ""
        if len(value) > self.max_length:
            raise ValueError(f"{self.label} is longer than {self.max_length} characters.")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise ValueError(f"{self.label} is not in the expected form" + (f": {self.help}" if self.help else "."))
        if self.validator is not None:
            try:
                self.validator(value)
            except ValueError as exc:  # named wherever it is read: beside the field, Check connection, a refused start
                message = str(exc)
                raise ValueError(message if message.startswith(self.label) else f"{self.label}: {message}") from None
        return value

    def problems(self) -> list[str]:
        """What is wrong with the declaration itself (the registry refuses an adapter with any)."""
        found = []
        if not isinstance(self.name, str) or not _PARAM_NAME.fullmatch(self.name):
            found.append(f"parameter name {self.name!r} is not lower-case letters, digits and _ (at most 40)")
        if not self.label:
            found.append(f"parameter {self.name!r} has no label")
        if self.pattern:
            try:
                re.compile(self.pattern)
            except re.error:
                found.append(f"parameter {self.name!r} has a pattern that does not compile")
        if self.validator is not None and not callable(self.validator):
            # Unreachable for a well-typed declaration; the registry checks what a vendor module really wrote.
            found.append(f"parameter {self.name!r} has a validator that is not callable")  # type: ignore[unreachable]
        return found


# -- the interfaces -------------------------------------------------------------------------------
class Backend(ABC):
    source: ClassVar[str]  # e.g. "lab:siem": named in every envelope
    # The system's name in a failure's reason ("ldap_unavailable", "splunk_forbidden"); "" names the
    # capability instead ("siem_timeout"), as the lab does.
    vendor: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    status_kind: ClassVar[str] = "HTTP"  # what a BackendError's `status` is, as an admin reads it
    url_schemes: ClassVar[dict[str, int]] = {"https": 443, "http": 80}  # the URLs it takes, each's default port

    def __init__(self, *, url: str, credential: str, timeout_s: float, params: Mapping[str, str] | None = None):
        self.url = url.rstrip("/")
        self._credential = credential
        self.timeout_s = timeout_s
        self._params = self.check_params(params or {})

    def __repr__(self) -> str:  # never the credential, nor a parameter
        return f"{type(self).__name__}(url={self.url!r})"

    @classmethod
    def check_params(cls, given: Mapping[str, str], *, plain_only: bool = False) -> dict[str, str]:
        """The values this adapter starts with: every declared parameter, "" when unset (the plain
        ones only, with `plain_only`: what a server's row stores, its secret ones sealed apart).

        Raises ParamError naming every unknown, missing or invalid parameter (never a value).
        """
        declared = {param.name: param for param in cls.params if not (plain_only and param.secret)}
        problems = [f"{name!r} is not a parameter of this adapter" for name in sorted(set(given) - set(declared))]
        values = {}
        for name, param in declared.items():
            try:
                values[name] = param.check(str(given.get(name, "")))
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            raise ParamError("; ".join(problems))
        return values

    def param(self, name: str) -> str:
        """A declared parameter's value ("" when an optional one is unset)."""
        return self._params[name]

    def secrets(self) -> list[str]:
        """Every secret this adapter holds, to be redacted from what its server answers: the credential
        and its secret parameters. An adapter that holds more (a header built from them, a token it
        fetched) adds them."""
        return [self._credential, *(self._params[param.name] for param in self.params if param.secret)]

    def redactor(self) -> Redactor:
        """Replaces every form of secrets() (as they are now: a token may change)."""
        # Shorter would rewrite ordinary words; no credential is that short.
        return _redactor(tuple(sorted({secret for secret in self.secrets() if len(secret) >= MIN_PART})))

    async def aclose(self) -> None:  # noqa: B027 - optional, not abstract
        """Release connections; adapters that hold none need not override."""

    @abstractmethod
    async def health(self) -> str:
        """Call the backend's health endpoint with the credential: what it says, for an admin to read."""

    async def already_done(self, tool: str, args, write: WriteContext) -> dict | None:
        """Whether the write `tool(args)` under `write.idempotency_key` already took effect: what it
        did (a dict) or None. Asked before an abandoned write is sent again, so that exactly once does
        not rest on the backend deduplicating; raise CannotTell when the backend cannot say."""
        raise CannotTell(tool)


@functools.lru_cache(maxsize=16)
def _redactor(secrets: tuple[str, ...]) -> Redactor:
    return Redactor(*secrets)


class SiemBackend(Backend):
    @abstractmethod
    @returns(Login, page=True)
    async def search_logins(self, args: schemas.SearchLogins) -> Page: ...

    @abstractmethod
    @returns(SiemEvent, page=True)
    async def search_events(self, args: schemas.SearchEvents) -> Page: ...


class EdrBackend(Backend):
    @abstractmethod
    @returns(Host)
    async def get_host(self, args: schemas.GetHost) -> dict: ...

    @abstractmethod
    @returns(Process, page=True)
    async def get_process_tree(self, args: schemas.HostActivity) -> Page: ...

    @abstractmethod
    @returns(Connection, page=True)
    async def get_network_connections(self, args: schemas.HostActivity) -> Page: ...


class EdrResponseBackend(Backend):
    @abstractmethod
    @returns(Isolation)
    async def isolate_host(self, args: schemas.HostAction, write: WriteContext) -> dict: ...

    @abstractmethod
    @returns(Isolation)
    async def release_host(self, args: schemas.HostAction, write: WriteContext) -> dict: ...


class IdentityBackend(Backend):
    @abstractmethod
    @returns(User)
    async def get_user(self, args: schemas.GetUser) -> dict: ...

    @abstractmethod
    @returns(AccountChange)
    async def disable_account(self, args: schemas.AccountAction, write: WriteContext) -> dict: ...

    @abstractmethod
    @returns(AccountChange)
    async def enable_account(self, args: schemas.AccountAction, write: WriteContext) -> dict: ...


class TicketingBackend(Backend):
    @abstractmethod
    @returns(Ticket)
    async def open_ticket(self, args: schemas.OpenTicket, write: WriteContext) -> dict: ...

    @abstractmethod
    @returns(Comment)
    async def add_comment(self, args: schemas.AddComment, write: WriteContext) -> dict: ...


class IntelBackend(Backend):
    @abstractmethod
    @returns(Indicator)
    async def lookup_indicator(self, args: schemas.LookupIndicator) -> dict: ...


def interface_methods(interface: type[Backend]) -> dict[str, Callable]:
    """The methods an adapter of `interface` must implement (health included), by name."""
    return {
        name: member
        for name, member in inspect.getmembers(interface, inspect.isfunction)
        if getattr(member, "__isabstractmethod__", False)
    }
