"""The interface each capability's backend implements, and the failures it may raise.

Adapters return our own shapes (Page, dicts of known keys), never a backend's raw payload,
and turn every transport or protocol failure into BackendError or TargetNotFound.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass

from toolserver import schemas
from toolserver.envelope import BackendFailure


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


class Backend(ABC):
    source: str  # e.g. "lab:siem": named in every envelope

    def __init__(self, *, url: str, credential: str, timeout_s: float):
        self.url = url.rstrip("/")
        self._credential = credential
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # never the credential
        return f"{type(self).__name__}(url={self.url!r})"

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


class SiemBackend(Backend):
    @abstractmethod
    async def search_logins(self, args: schemas.SearchLogins) -> Page: ...

    @abstractmethod
    async def search_events(self, args: schemas.SearchEvents) -> Page: ...


class EdrBackend(Backend):
    @abstractmethod
    async def get_host(self, args: schemas.GetHost) -> dict: ...

    @abstractmethod
    async def get_process_tree(self, args: schemas.HostActivity) -> Page: ...

    @abstractmethod
    async def get_network_connections(self, args: schemas.HostActivity) -> Page: ...


class EdrResponseBackend(Backend):
    @abstractmethod
    async def isolate_host(self, args: schemas.HostAction, write: WriteContext) -> dict: ...

    @abstractmethod
    async def release_host(self, args: schemas.HostAction, write: WriteContext) -> dict: ...


class IdentityBackend(Backend):
    @abstractmethod
    async def get_user(self, args: schemas.GetUser) -> dict: ...

    @abstractmethod
    async def disable_account(self, args: schemas.AccountAction, write: WriteContext) -> dict: ...

    @abstractmethod
    async def enable_account(self, args: schemas.AccountAction, write: WriteContext) -> dict: ...


class TicketingBackend(Backend):
    @abstractmethod
    async def open_ticket(self, args: schemas.OpenTicket, write: WriteContext) -> dict: ...

    @abstractmethod
    async def add_comment(self, args: schemas.AddComment, write: WriteContext) -> dict: ...


class IntelBackend(Backend):
    @abstractmethod
    async def lookup_indicator(self, args: schemas.LookupIndicator) -> dict: ...
