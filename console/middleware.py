"""Response headers the console sets on every page and API answer it renders itself, and the session's
gates: the second factor, the idle timeout and step-up for admin changes.

Static files never reach these: WhiteNoise, earlier in MIDDLEWARE, answers them first.
"""

import logging
import time
from urllib.parse import quote

from csp.middleware import CSPMiddleware
from django.conf import settings
from django.contrib.auth import logout
from django.core.exceptions import DisallowedHost
from django.db import OperationalError
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.deprecation import MiddlewareMixin

from console import mfa
from console.signin import client_address
from core import sockets
from investigations import presence
from investigations.audit import chain as audit

log = logging.getLogger(__name__)


class NoStoreMiddleware(MiddlewareMixin):
    """`Cache-Control: no-store, private` on every answer Django renders.

    Pages and API answers carry a person's data and a CSRF token: no browser history, shared
    proxy or back button may keep a copy after sign-out. Applied to every rendered answer, not
    only signed-in ones, so an API answer authenticated by a bearer token (no session) and a
    page whose user changed mid-request are covered alike. Directives a view set (never_cache)
    are kept.
    """

    def process_response(self, request, response):
        patch_cache_control(response, no_store=True, private=True)
        return response


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware (CONTENT_SECURITY_POLICY in settings) with the console's own
    websocket origin added to connect-src.

    CSP 3 lets 'self' match ws:/wss: on the page's host, but not every browser in use does; the
    origin is named outright, from the Host header Django has already checked against ALLOWED_HOSTS.
    """

    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()
        except DisallowedHost:  # the answer is the refusal of this very host: it gets no extra origin
            return parts
        scheme = "wss" if request.is_secure() else "ws"
        parts.update = {**(parts.update or {})}
        parts.update["connect-src"] = [*parts.update.get("connect-src", ()), f"{scheme}://{host}"]
        return parts


class ApiErrorsAsJson(MiddlewareMixin):
    """Whatever goes wrong, an API caller gets JSON, never Django's HTML error page.

    A database that cannot give a connection in time (every pooled connection busy past
    GATEHOUSE_DB_POOL_TIMEOUT_S) is 503 with Retry-After: back-pressure a client can act on.
    Anything else is a 500 that says nothing of the cause; the log has it.
    """

    def process_exception(self, request, exception):
        if not request.path.startswith("/api/"):
            return None
        if isinstance(exception, OperationalError):
            log.warning("API %s %s: the database is busy (%s)", request.method, request.path, type(exception).__name__)
            response = JsonResponse({"detail": "The console is busy: try again in a moment."}, status=503)
            response["Retry-After"] = "1"
            return response
        log.error("API %s %s failed", request.method, request.path, exc_info=exception)
        return JsonResponse({"detail": "Internal error: the console's log says what happened."}, status=500)


class SecondFactorGate:
    """A signed-in person who has a second factor, or must have one (console.mfa), reaches nothing
    but the step-up page (or, without a factor yet, the enrolment pages) and sign-out until this
    session has given it. An API call on such a session is refused 403; a bearer token is judged
    by the API alone (its user is not the session's)."""

    ALWAYS = ("/logout/", "/login/", "/healthz", "/static/")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        if not user.is_authenticated or user.is_verified() or request.path.startswith(self.ALWAYS):
            return self.get_response(request)
        owed = mfa.owed(request)
        if owed == "step_up":
            allowed, target = ("/account/step-up/", "/webauthn/authentication/", "/webauthn/jsi18n/"), "step_up"
        elif owed == "second_factor":
            allowed, target = ("/account/second-factor/", "/webauthn/"), "second_factor"
        else:
            return self.get_response(request)
        if request.path.startswith(allowed):
            return self.get_response(request)
        if request.path.startswith("/api/"):
            return JsonResponse({"detail": "Give your second factor first: sign in again in the console."}, status=403)
        return redirect(f"{reverse(target)}?next={quote(request.get_full_path())}")


class IdleTimeout:
    """Approvers and admins are signed out after IDLE_MINUTES without a request (the session's absolute
    lifetime, SESSION_COOKIE_AGE from the sign-in: console.signin.logged_in, holds for everyone). The last
    request's time is written at most once a minute, so most requests write no session."""

    KEY = "gatehouse_last_seen"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if settings.IDLE_MINUTES and request.user.is_authenticated:
            now, last = time.time(), request.session.get(self.KEY)
            if last is not None and now - last > settings.IDLE_MINUTES * 60 and mfa.privileged(request.user):
                audit.record_sign_in("idle_timeout", request.user.get_username(), client_address(request))
                logout(request)  # a new, empty session: the request goes on signed out
            elif last is None or now - last > 60:
                request.session[self.KEY] = now
                request.session[sockets.IDLE_UNTIL] = now + settings.IDLE_MINUTES * 60  # what their sockets judge by
        return self.get_response(request)


class StepUpForChanges:
    """Every admin change on a page (console/manage/, the Django admin) needs a fresh proof of presence
    (investigations/presence.py): a POST without one is refused 403, naming step-up. The administration
    API judges the same in its rule (console/manage/api.py)."""

    PATHS = ("/manage/", "/admin/")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (
            request.method not in ("GET", "HEAD", "OPTIONS")
            and request.path.startswith(self.PATHS)
            and request.user.is_authenticated
            and not request.path.startswith(("/admin/login/", "/admin/logout/"))
        ):
            try:
                presence.require_fresh(presence.from_session(request.session))
            except presence.StepUpRequired as refused:
                return render(
                    request,
                    "account/step_up_needed.html",
                    {"detail": str(refused), "back": request.path},
                    status=403,
                )
        return self.get_response(request)
