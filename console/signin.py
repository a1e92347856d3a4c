"""Sign-ins, failed sign-ins and sign-outs, as records of the audit trail.

Connected in ConsoleConfig.ready to django.contrib.auth's signals, so both the console's and the
admin's sign-in are covered. The address is the one django-axes counts failures by; a failed
attempt's credentials are read for the user name only (Django has already masked the password).
"""

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_ip_address

from investigations.audit import chain as audit


def client_address(request) -> str | None:
    return get_client_ip_address(request) if request is not None else None


def logged_in(sender, request, user, **kwargs):
    audit.record_sign_in("logged_in", user.get_username(), client_address(request))


def logged_out(sender, request, user, **kwargs):
    if user is not None:  # signing out without a session signs nobody out
        audit.record_sign_in("logged_out", user.get_username(), client_address(request))


def login_failed(sender, credentials, request=None, **kwargs):
    audit.record_sign_in("login_failed", str(credentials.get("username") or ""), client_address(request))


class SignInThrottle(AxesStandaloneBackend):
    """django-axes' lockout check for sign-ins over HTTP (both login views pass their request).

    authenticate() without a request is not a sign-in anyone can repeat from outside (the test
    client's login, a shell): axes would raise for it, so it is passed on to the next backend.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
