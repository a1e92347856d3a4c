"""Proof of presence: how and when a person last proved they are at the keyboard (a second factor's
code, a passkey, or for a single sign-on account a fresh sign-in at its IdP), read by every
privileged decision (approving or rejecting a write, an admin change).

A browser session keeps its last proof (`remember`): the factor and the time. A decide-scoped API
token (investigations/tokens.py) is its own proof for as long as it lives: it was made by someone
with shell access, short-lived, for one person's bot. Step-up is off when STEP_UP_MINUTES is 0.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

SESSION_KEY = "gatehouse_presence"
STEP_UP_URL = "/account/step-up/"


@dataclass(frozen=True)
class Proof:
    factor: str  # "totp", "recovery_code", "webauthn", "idp" (a fresh sign-in at the IdP), "api_token:<prefix>"
    at: datetime
    valid_until: datetime

    def as_record(self) -> dict:
        """What the approval and its audit record keep: the factor and the moment, never a code."""
        return {"factor": self.factor, "at": self.at.isoformat()}


class StepUpRequired(Exception):
    """A privileged decision without a fresh proof of presence: answered 403, naming step-up."""

    def __init__(self, message: str = ""):
        super().__init__(
            message
            or f"Step-up required: prove your presence again (your second factor, or a fresh sign-in at your "
            f"identity provider, within the last {settings.STEP_UP_MINUTES} minutes) at {STEP_UP_URL}, then decide."
        )


def step_up_on() -> bool:
    return settings.STEP_UP_MINUTES > 0


def remember(session, factor: str, at: datetime | None = None) -> Proof:
    """Keep in the session that its person proved presence with `factor` just now (or at `at`: when
    the identity provider says it signed them in)."""
    at = at or timezone.now()
    session[SESSION_KEY] = {"factor": factor, "at": at.isoformat()}
    return Proof(factor, at, at + timedelta(minutes=settings.STEP_UP_MINUTES))


def from_session(session) -> Proof | None:
    kept = session.get(SESSION_KEY) if session is not None else None
    if not kept:
        return None
    at = datetime.fromisoformat(kept["at"])
    return Proof(kept["factor"], at, at + timedelta(minutes=settings.STEP_UP_MINUTES))


def from_token(api_token) -> Proof | None:
    """A token proves presence only if it was made to decide; it does so until it expires."""
    if api_token is None or not api_token.decide:
        return None
    return Proof(f"api_token:{api_token.token_prefix}", api_token.created_at, api_token.expires_at)


def of_request(request) -> Proof | None:
    """The proof a request carries: its API token's if it came with one (api_auth sets it), else its session's."""
    api_token = getattr(request, "api_token", None)
    if api_token is not None:
        return from_token(api_token)
    return from_session(getattr(request, "session", None))


def require_fresh(proof: Proof | None, now: datetime | None = None) -> Proof | None:
    """The proof, if it is fresh at `now`; StepUpRequired otherwise. None when step-up is off."""
    if not step_up_on():
        return proof
    now = now or timezone.now()
    if proof is None:
        raise StepUpRequired()
    if not proof.at <= now < proof.valid_until:
        raise StepUpRequired()
    return proof
