"""Who is asking the API: a person's API token (`Authorization: Bearer ghu_...`) or the console's
session, and the endpoint's rule that judges them before anything they sent is read (architecture
rule 12). Every router of every room authenticates through `auth_for`."""

from ninja.errors import HttpError
from ninja.security import HttpBearer, SessionAuth
from ninja.utils import check_csrf

from core.problems import TokenRejected
from investigations.intake.services import TOKEN_PREFIX as INTEGRATION_TOKEN_PREFIX
from investigations.tokens import TOKEN_PREFIX, token_for


class Refused(Exception):
    """Who is asking may not use this endpoint (or this object): said before anything they sent is read,
    so nobody learns an endpoint's shape or behaviour without the right to use it."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class Gated:
    """After a scheme authenticates a person, the endpoint's rule judges them: `rule(request, user)`
    answers None (allowed) or (status, detail). ninja runs authentication before it parses the path,
    query or body, so a refusal always comes before a 400."""

    rule = None

    def judged(self, request, user):
        if user is not None and self.rule is not None and (refusal := self.rule(request, user)):
            raise Refused(*refusal)
        return user


class UserToken(Gated, HttpBearer):
    """A person's API token. It is tried first: a request that sends one is judged by it alone."""

    openapi_bearerFormat = f"{TOKEN_PREFIX}..."
    openapi_description = (
        "A person's API token from `manage.py api_tokens create USERNAME --name NAME`. It acts with that "
        "person's permissions, checked on every request; no CSRF token is needed."
    )

    def __init__(self, rule=None):
        self.rule = rule
        super().__init__()

    def __call__(self, request):
        header = request.headers.get("Authorization")
        if header is None:
            return None  # not this scheme: the browser session may apply
        # Parsed here rather than by HttpBearer, which logs a malformed header (a token, maybe) in DEBUG.
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("Send your API token as the header  Authorization: Bearer <token>.")
        return self.judged(request, self.authenticate(request, token.strip()))

    def authenticate(self, request, token: str):
        if token.startswith(INTEGRATION_TOKEN_PREFIX):
            raise TokenRejected(
                "An integration token can only send alerts: decisions need a person's API token.", invalid_token=True
            )
        api_token = token_for(token)
        if api_token is None:
            raise TokenRejected("The token is unknown or revoked, or its user is inactive.", invalid_token=True)
        request.api_token = api_token  # its scope is its proof of presence (investigations/presence.py)
        return api_token.user


class BrowserSession(Gated, SessionAuth):
    """The console's session cookie, as in the browser; an unsafe method must pass Django's CSRF check."""

    openapi_description = (
        "The console's session cookie (sign in at /login/). A POST must also send the CSRF token in the "
        "X-CSRFToken header."
    )

    def __init__(self, rule=None):
        self.rule = rule
        super().__init__()

    def __call__(self, request):
        user = request.user
        if not (user.is_authenticated and user.is_active):
            # The last scheme tried: nothing authenticated the request.
            raise TokenRejected("Authentication required: sign in, or send Authorization: Bearer <your API token>.")
        if self.csrf and not getattr(request, "_ninja_csrf_exempt", False) and check_csrf(request) is not None:
            raise HttpError(403, "CSRF check failed: send the page's CSRF token in the X-CSRFToken header.")
        return self.judged(request, user)


def auth_for(rule=None) -> list:
    """The API's two schemes (a person's token, then the browser session), judged by `rule`."""
    return [UserToken(rule), BrowserSession(rule)]


AUTH = auth_for()
