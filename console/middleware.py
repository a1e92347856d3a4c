"""Response headers the console sets on every page and API answer it renders itself.

Static files never reach these: WhiteNoise, earlier in MIDDLEWARE, answers them first.
"""

import logging

from csp.middleware import CSPMiddleware
from django.core.exceptions import DisallowedHost
from django.db import OperationalError
from django.http import JsonResponse
from django.utils.cache import patch_cache_control
from django.utils.deprecation import MiddlewareMixin

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
