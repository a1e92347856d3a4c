"""Single sign-on over OpenID Connect: mozilla-django-oidc's code flow (PKCE, state, nonce), configured
by the issuer's discovery document, with the IdP's groups deciding the roles at every sign-in.

What we add to the library, and why:
- its endpoints come from discovery (fetched once per process, when a sign-in first needs them);
- the ID token is decoded by PyJWT with the audience, issuer and expiry it must have: the library
  checks the algorithm and signature but passes `verify_aud=False` and never checks `iss`;
- an account is found by issuer and subject (SsoIdentity), never by e-mail, so an IdP account never
  signs in as a local one that shares its address or name;
- roles come from the groups claim (GATEHOUSE_OIDC_ROLE_GROUPS) through administration.apply_idp_roles,
  the recorded path (architecture rule 11); a group taken away at the IdP takes the role away here at
  the next sign-in, and console.signals closes that person's sockets;
- a refused sign-in says why in its audit record (console.signin.login_failed), never with a token;
- step-up for an SSO account is a fresh sign-in at the IdP (StepUpView: `prompt=login`, `max_age=0`),
  a proof of presence only if the ID token's `auth_time` says the IdP authenticated the same person
  after it was asked; a sign-in counts as one from its `auth_time` too (investigations/presence.py);
  where GATEHOUSE_OIDC_PRESENCE_AMR names methods, either counts only if its `amr` names one of them.
"""

import threading
import time
from datetime import UTC, datetime

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect
from django.views.generic import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from console import signin
from console.manage import administration
from console.models import SsoIdentity
from investigations import presence
from investigations.audit import chain as audit

BACKEND = "console.sso.SsoBackend"
# ID token claims a sign-in cannot do without (PyJWT refuses a token missing any).
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "sub"]
STEP_UP_KEY = "gatehouse_sso_step_up"  # in the session: who asked the IdP for a fresh sign-in, and when


class SignInRefused(Exception):
    """A sign-in the console refuses; the message says why, for the audit record."""


_discovered: dict[str, dict] = {}
_discovery_lock = threading.Lock()


def endpoint(name: str) -> str:
    """One of the issuer's endpoints, from its discovery document (OpenID Connect Discovery 1.0)."""
    issuer = settings.OIDC_ISSUER
    with _discovery_lock:
        document = _discovered.get(issuer)
        if document is None:
            response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=settings.OIDC_TIMEOUT)
            response.raise_for_status()
            document = response.json()
            if document.get("issuer") != issuer:  # Discovery 4.3: it must be exactly the issuer asked
                raise SignInRefused(f"the discovery document names another issuer, {document.get('issuer')!r}")
            _discovered[issuer] = document
    return document[name]


def roles_from(claims: dict) -> set[str]:
    """The roles the IdP's groups claim maps to (GATEHOUSE_OIDC_GROUPS_CLAIM, GATEHOUSE_OIDC_ROLE_GROUPS)."""
    groups = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(groups, str):
        groups = [groups]
    return {settings.OIDC_ROLE_GROUPS[group] for group in groups if group in settings.OIDC_ROLE_GROUPS}


def why(exc: Exception) -> str:
    """What an audit record says of a refused sign-in: never a token, nor an IdP's response body."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"the identity provider answered {exc.response.status_code}"
    if isinstance(exc, requests.RequestException):
        return f"the identity provider did not answer ({type(exc).__name__})"
    if isinstance(exc, jwt.PyJWTError):
        return f"ID token refused: {exc}"
    return str(exc)


class SsoBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, on discovery, with the claims checks above."""

    def __init__(self, *args, **kwargs):
        # Not the library's __init__: a backend is built for every request of a signed-in user, and
        # that must not need the IdP. Its endpoints are looked up when a sign-in uses them.
        self.UserModel = get_user_model()
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None

    OIDC_OP_TOKEN_ENDPOINT = property(lambda self: endpoint("token_endpoint"))
    OIDC_OP_USER_ENDPOINT = property(lambda self: endpoint("userinfo_endpoint"))
    OIDC_OP_JWKS_ENDPOINT = property(lambda self: endpoint("jwks_uri"))

    def authenticate(self, request, **kwargs):
        # Only the callback view passes a nonce: a password form posted with ?code=&state= is not a sign-in here.
        if not settings.OIDC_ISSUER or request is None or "nonce" not in kwargs:
            return None
        try:
            return super().authenticate(request, **kwargs)
        except (SignInRefused, SuspiciousOperation, jwt.PyJWTError, requests.RequestException) as exc:
            request.sso_refused = why(exc)
            raise PermissionDenied(request.sso_refused) from None

    def retrieve_matching_jwk(self, token):
        # The library needs a `kid` in the token; an IdP with a single signing key may leave it out.
        if "kid" in jwt.get_unverified_header(token):
            return super().retrieve_matching_jwk(token)
        response = requests.get(self.OIDC_OP_JWKS_ENDPOINT, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        keys = response.json().get("keys") or []
        if len(keys) != 1:
            raise SuspiciousOperation("the ID token names no key and the IdP has several")
        return jwt.PyJWK(keys[0])

    def _verify_jws(self, payload, key):
        return jwt.decode(
            payload,
            key,
            algorithms=[self.OIDC_RP_SIGN_ALGO],  # `none` and every other algorithm refused
            audience=self.OIDC_RP_CLIENT_ID,
            issuer=settings.OIDC_ISSUER,
            options={"require": REQUIRED_CLAIMS},
            leeway=settings.OIDC_CLOCK_LEEWAY_S,
        )

    def get_userinfo(self, access_token, id_token, payload):
        info = super().get_userinfo(access_token, id_token, payload)
        if info.get("sub") != payload["sub"]:  # Core 5.3.2: the UserInfo answer must be about the token's subject
            raise SignInRefused("the UserInfo answer is about another subject")
        claims = info | payload  # the verified ID token's claims win
        self.request.sso_username = self.username(claims)
        self.request.sso_auth_time = payload.get("auth_time")  # when the IdP last authenticated the person
        self.request.sso_amr = payload.get("amr")  # and how
        return claims

    def verify_claims(self, claims):
        return bool(claims.get("sub"))

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(
            sso_identity__issuer=settings.OIDC_ISSUER, sso_identity__subject=claims["sub"]
        )

    @staticmethod
    def username(claims: dict) -> str:
        return str(claims.get(settings.OIDC_USERNAME_CLAIM) or claims.get("email") or claims["sub"])[:150]

    @transaction.atomic
    def create_user(self, claims):
        """Just in time, for someone whose groups give them a role; their name never an existing account's."""
        roles = roles_from(claims)
        if not roles:
            raise SignInRefused("none of their groups maps to a role")
        username = self.username(claims)
        if self.UserModel.objects.filter(username=username).exists():
            raise SignInRefused(f"the user name {username!r} is another account's")
        user = self.UserModel.objects.create_user(username, email=claims.get("email") or "")  # no usable password
        SsoIdentity.objects.create(user=user, issuer=settings.OIDC_ISSUER, subject=claims["sub"])
        administration.apply_idp_roles(user, roles, settings.OIDC_ISSUER)
        return user

    def update_user(self, user, claims):
        """At every sign-in the IdP's groups decide the roles; none left, no sign-in (the roles taken first)."""
        if not user.is_active:
            raise SignInRefused("the account is deactivated")
        roles = roles_from(claims)
        administration.apply_idp_roles(user, roles, settings.OIDC_ISSUER)
        if not roles:
            raise SignInRefused("none of their groups maps to a role")
        return user

    def get_user(self, user_id):
        if not settings.OIDC_ISSUER:  # single sign-on switched off ends its sessions
            return None
        user = super().get_user(user_id)  # the library's does not look at is_active
        return user if user is not None and self.user_can_authenticate(user) else None


class SignInView(OIDCAuthenticationRequestView):
    """Sends the browser to the IdP (the library's view, its endpoint from discovery)."""

    def __init__(self, **kwargs):
        View.__init__(self, **kwargs)  # the library's reads the endpoint here, before we can answer for it
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID

    def get(self, request):
        if not settings.OIDC_ISSUER:
            raise Http404("single sign-on is not configured")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = endpoint("authorization_endpoint")
        except (SignInRefused, requests.RequestException, ValueError, KeyError):
            messages.error(request, "Single sign-on is unavailable: the identity provider did not answer.")
            return redirect("login")
        return super().get(request)


class StepUpView(SignInView):
    """Step-up for a signed-in SSO account: back to the IdP, asked to authenticate the person again
    whatever session it holds (`prompt=login`; `max_age=0`, which also obliges it to say when, in
    `auth_time`). The callback judges the answer (CallbackView.stepped_up)."""

    def get(self, request):
        if not (request.user.is_authenticated and signin.is_sso_account(request.user)):
            return redirect("step_up")  # a local account steps up with its own factor
        request.session[STEP_UP_KEY] = {"user": request.user.pk, "asked_at": time.time()}
        return super().get(request)

    def get_extra_params(self, request):
        return {**super().get_extra_params(request), "prompt": "login", "max_age": "0"}


class CallbackView(OIDCAuthenticationCallbackView):
    """The library's callback. A sign-in it refuses before asking for a token (the person denied it at
    the IdP, or the answer is not for this browser) sends Django no signal, so it is recorded here.
    A sign-in's `auth_time` is its person's proof of presence from then; a step-up's must be newer
    than the step-up's request, and of the same person."""

    def login_success(self):
        asked = self.request.session.pop(STEP_UP_KEY, None)
        auth_time = _seconds(getattr(self.request, "sso_auth_time", None))
        if asked is not None and self.request.user.is_authenticated:
            return self.stepped_up(asked, auth_time)
        response = super().login_success()
        if auth_time is not None and _methods_missing(self.request) is None:
            presence.remember(self.request.session, "idp", at=_moment(auth_time))
        return response

    def stepped_up(self, asked: dict, auth_time: float | None):
        request, leeway, now = self.request, settings.OIDC_CLOCK_LEEWAY_S, time.time()
        if not (request.user.pk == self.user.pk == asked["user"]):
            refusal = "the identity provider signed in another account"
        elif auth_time is None or not asked["asked_at"] - leeway <= auth_time <= now + leeway:
            refusal = "the identity provider did not sign the person in again (its auth_time is older than the request)"
        elif missing := _methods_missing(request):
            refusal = missing
        else:
            response = super().login_success()  # the same person: no new login, the session kept
            presence.remember(request.session, "idp", at=_moment(min(auth_time, now)))
            audit.record_sign_in("step_up", request.user.get_username(), signin.client_address(request), factor="idp")
            return response
        audit.record_sign_in(
            "step_up_failed", request.user.get_username(), signin.client_address(request), how="sso", reason=refusal
        )
        messages.error(request, f"Step-up refused: {refusal}.")
        return redirect(self.success_url)

    def get(self, request):
        try:
            return super().get(request)
        except SuspiciousOperation:  # the library's: a state this browser's session never issued
            return self.refused_early("the answer's state is not one this browser asked for")

    def login_failure(self):
        if hasattr(self, "user"):  # authenticate ran: console.signin recorded the outcome
            return super().login_failure()
        error = self.request.GET.get("error")
        return self.refused_early(
            f"the identity provider answered {error[:60]!r}" if error else "no sign-in of this browser awaited it"
        )

    def refused_early(self, reason: str):
        signin.sso_failed(self.request, reason)
        return super().login_failure()


def _methods_missing(request) -> str | None:
    """Why the IdP's sign-in proves no presence for want of a method GATEHOUSE_OIDC_PRESENCE_AMR requires
    (its `amr` names none of them); None when it names one, or none is required."""
    required = settings.OIDC_PRESENCE_AMR
    amr = getattr(request, "sso_amr", None)
    used = [str(method)[:20] for method in amr[:10]] if isinstance(amr, list) else []
    if not required or set(used) & set(required):
        return None
    return (
        f"the identity provider did not say it used a required method "
        f"(amr: {', '.join(used) or 'none'}; required: {', '.join(required)})"
    )


def _seconds(value) -> float | None:
    """A JWT NumericDate, or None for anything else (a missing or malformed claim proves nothing)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)
