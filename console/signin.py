"""Sign-ins, failed sign-ins and sign-outs, as records of the audit trail; how long a sign-in lasts; and who may
sign in with a password.

Connected in ConsoleConfig.ready to django.contrib.auth's signals, so both the console's and the
admin's sign-in are covered, and single sign-on's (console.sso) too. The address is the one
django-axes counts failures by; a failed attempt's credentials are read for the user name only
(Django has already masked the password); a refused single sign-on says why (console.sso.why).
"""

from datetime import timedelta

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_ip_address
from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib.auth.backends import ModelBackend, UserModel
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from core.roles import ADMIN, has_role
from investigations.audit import chain as audit

SSO_BACKEND = "console.sso.SsoBackend"


def client_address(request) -> str | None:
    return get_client_ip_address(request) if request is not None else None


def logged_in(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        from console import mfa  # it imports this module

        # GATEHOUSE_SESSION_SECONDS from this sign-in, however the session is used: a lifetime in seconds, Django's
        # default, is counted from the session's last save (IdleTimeout saves it once a minute of use).
        request.session.set_expiry(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE))
        request.session.pop(mfa.SECOND_FACTOR_OWED, None)
        mfa.owed(request, user)  # decided now: a socket opened before any page judges as the pages will
    sso = getattr(user, "backend", "") == SSO_BACKEND
    audit.record_sign_in("logged_in", user.get_username(), client_address(request), **({"how": "sso"} if sso else {}))
    # Its own failed sign-ins are behind it now; no one else's, from its address or any (AXES_RESET_ON_SUCCESS).
    axes_reset(username=user.get_username())


def logged_out(sender, request, user, **kwargs):
    if user is not None:  # signing out without a session signs nobody out
        audit.record_sign_in("logged_out", user.get_username(), client_address(request))


def login_failed(sender, credentials, request=None, **kwargs):
    if "nonce" in credentials:  # the single sign-on callback (console.sso): its name and reason are on the request
        sso_failed(request, getattr(request, "sso_refused", ""))
        return
    audit.record_sign_in("login_failed", str(credentials.get("username") or ""), client_address(request))


def sso_failed(request, reason: str) -> None:
    username = getattr(request, "sso_username", "")
    audit.record_sign_in("login_failed", username, client_address(request), how="sso", reason=reason)


def is_sso_account(user) -> bool:
    """An account made by single sign-on: the IdP asks for its factors, and its step-up is a fresh sign-in there."""
    return hasattr(user, "sso_identity")


class PasswordBackend(ModelBackend):
    """Django's password check, as far as GATEHOUSE_PASSWORD_SIGNIN allows: `on`; `admins`, break-glass
    (local accounts holding the admin role, or superusers); `off` (refused, and recorded as failed).
    Its sessions end with it too: get_user asks the same question on every request and socket check."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        mode = settings.PASSWORD_SIGNIN
        if mode == "off" and username is not None:
            raise PermissionDenied("password sign-in is switched off")
        return super().authenticate(request, username, password, **kwargs)

    def get_user(self, user_id):
        """As ModelBackend's, with the SSO identity in the same query: this runs on every request."""
        user = UserModel._default_manager.select_related("sso_identity").filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None

    def user_can_authenticate(self, user):
        mode = settings.PASSWORD_SIGNIN
        # An SSO account signs in at its IdP only, in every mode, whatever password it was given: a session
        # of it owes no factor of ours (the IdP asked for them: console.mfa.owed), so a password would be all.
        if not super().user_can_authenticate(user) or mode == "off" or is_sso_account(user):
            return False
        if mode == "admins":
            return user.is_superuser or has_role(user, ADMIN)
        return True


class SignInThrottle(AxesStandaloneBackend):
    """django-axes' lockout check for sign-ins over HTTP (both login views pass their request).

    authenticate() without a request is not a sign-in anyone can repeat from outside (the test
    client's login, a shell): axes would raise for it, so it is passed on to the next backend.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
