"""Second factor and step-up for local accounts (django-otp: TOTP devices and static recovery codes;
django-otp-webauthn: passkeys and security keys).

Who must have a factor, enrolling one (its key shown once, confirmed with a code), recovery codes,
removing a factor, and the one page that asks for a code: after the password at sign-in and again
before a privileged decision (step-up, investigations/presence.py). Each enrolment, removal and
step-up is one chained audit record naming the factor's kind, never a code or a key.
"""

import time
from io import BytesIO
from urllib.parse import quote

import qrcode
import qrcode.image.svg
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp import match_token, user_has_device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn import exceptions as webauthn_errors
from django_otp_webauthn.helpers import WebAuthnHelper
from django_otp_webauthn.models import WebAuthnCredential
from django_otp_webauthn.views import (
    BeginCredentialRegistrationView,
    CompleteCredentialAuthenticationView,
    CompleteCredentialRegistrationView,
)

from console.signin import client_address, is_sso_account
from core.roles import ADMIN, has_role
from core.sockets import OWED_KEPT_S, SECOND_FACTOR_OWED
from investigations import presence
from investigations.approvals.services import approvable_tools
from investigations.audit import chain as audit

RECOVERY_CODES = 10
SSO_FACTORS = (
    "A single sign-on account's factors are its identity provider's: it steps up with a fresh sign-in there, "
    "and adds none here."
)


def privileged(user) -> bool:
    """Admins and anyone who may approve a write: the people a stolen password hurts most."""
    return has_role(user, ADMIN) or bool(approvable_tools(user))


def must_have_factor(user) -> bool:
    """A local account's (an SSO account's factors are its IdP's)."""
    return settings.MFA_REQUIRED and privileged(user) and not is_sso_account(user)


def owed(request, user=None) -> str:
    """What this signed-in, unverified session still owes: "step_up" (its person has a factor),
    "second_factor" (must enrol one) or "". Kept in the session (core.sockets reads it too) and asked
    again at most once a minute: the device tables and the approvable tools are not read per request."""
    kept = request.session.get(SECOND_FACTOR_OWED)
    now = time.time()
    if kept is not None and now - kept["at"] < OWED_KEPT_S:
        return kept["state"]
    state = owed_by(user or request.user)
    request.session[SECOND_FACTOR_OWED] = {"state": state, "at": now}
    return state


def owed_by(user) -> str:
    """What a session of `user` not yet verified owes now (settings.SECOND_FACTOR_OWED_BY: the sockets ask it too)."""
    if is_sso_account(user):
        return ""  # the IdP asked for its factors at the sign-in
    return "step_up" if has_factor(user) else "second_factor" if must_have_factor(user) else ""


def has_factor(user) -> bool:
    return user_has_device(user, confirmed=True)


def factor_of(device) -> str:
    if isinstance(device, WebAuthnCredential):
        return "webauthn"
    return "recovery_code" if isinstance(device, StaticDevice) else "totp"


def _record(request, what: str, **details) -> None:
    audit.record_sign_in(what, request.user.get_username(), client_address(request), **details)


def _safe_next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    ok = url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure())
    return target if ok else default


class CodeForm(forms.Form):
    code = forms.CharField(max_length=16, strip=True, widget=forms.TextInput(attrs={"autocomplete": "one-time-code"}))


def _proved(request, device) -> None:
    """The session's second factor (django-otp) and its proof of presence, now."""
    if not request.user.is_verified():
        otp_login(request, device)
    presence.remember(request.session, factor_of(device))


@login_required
def step_up(request):
    """A code from the person's factor: after the password (the session is not yet verified), or
    again before a privileged decision. A TOTP code is refused a second time (django-otp keeps the
    last time step used) and a recovery code works once. A single sign-on account steps up at its IdP."""
    if is_sso_account(request.user):
        return redirect(f"{reverse('oidc_step_up')}?next={quote(_safe_next(request, reverse('home')))}")
    if not has_factor(request.user):
        return redirect(f"{reverse('second_factor')}?next={quote(_safe_next(request, reverse('home')))}")
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        device = match_token(request.user, form.cleaned_data["code"])
        if device is not None:
            signing_in = not request.user.is_verified()
            _proved(request, device)
            _record(request, "second_factor" if signing_in else "step_up", factor=factor_of(device))
            return redirect(_safe_next(request, reverse("home")))
        _record(request, "step_up_failed")
        form.add_error("code", "That code is wrong, used already, or too old. Try the next one.")
        status = 400
    context = {"form": form, "next": _safe_next(request, ""), "minutes": settings.STEP_UP_MINUTES}
    return render(request, "account/step_up.html", context, status=status)


@login_required
def second_factor(request):
    """The person's factors, and the way to add (a local account) or remove one."""
    context = {
        "sso": is_sso_account(request.user),
        "totp_devices": TOTPDevice.objects.devices_for_user(request.user, confirmed=True),
        "recovery": StaticDevice.objects.devices_for_user(request.user, confirmed=True).first(),
        "passkeys": WebAuthnCredential.objects.filter(user=request.user, confirmed=True),
        "required": must_have_factor(request.user),
        "next": _safe_next(request, ""),
    }
    return render(request, "account/second_factor.html", context)


def _enrolment_page(request, device: TOTPDevice, form: CodeForm, status: int = 200):
    """The key as a QR code and as text, for the app to scan: on this answer only, never stored elsewhere."""
    svg = BytesIO()
    qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage).save(svg)  # no script: CSP holds
    context = {
        "device": device,
        "qr": svg.getvalue().decode(),
        "secret": _base32(device),
        "form": form,
        "next": _safe_next(request, ""),
    }
    return render(request, "account/totp_enrol.html", context, status=status)


def _base32(device: TOTPDevice) -> str:
    from base64 import b32encode

    return b32encode(device.bin_key).decode()


def _proof_owed_to_change_factors(user) -> bool:
    """An enrolled person's, or an SSO account's (its proof is a fresh sign-in at its IdP; it adds no factor of its
    own, _may_add_a_factor, and removes one it holds from before only after that sign-in)."""
    return has_factor(user) or is_sso_account(user)


def _stale_to_change_factors(request) -> str | None:
    """Why this session may not change its person's factors now (it owes a fresh proof of presence, as an admin
    change does: _proof_owed_to_change_factors), or None."""
    if _proof_owed_to_change_factors(request.user):
        try:
            presence.require_fresh(presence.from_session(request.session))
        except presence.StepUpRequired as refused:
            return str(refused)
    return None


def _fresh_or_step_up(request):
    if (refused := _stale_to_change_factors(request)) is not None:
        messages.error(request, refused)
        return redirect(f"{reverse('step_up')}?next={quote(reverse('second_factor'))}")
    return None


def _may_add_a_factor(request):
    """None, or the answer refusing: an SSO account adds no factor of its own (its IdP's are its factors, and one of
    its own would prove presence in place of the IdP's fresh sign-in); anyone else's session must be fresh."""
    if is_sso_account(request.user):
        messages.error(request, SSO_FACTORS)
        return redirect("second_factor")
    return _fresh_or_step_up(request)


@login_required
@require_POST
def totp_start(request):
    """A new, unconfirmed TOTP device (any earlier unconfirmed one dropped), and its key shown once."""
    if (refused := _may_add_a_factor(request)) is not None:
        return refused
    TOTPDevice.objects.filter(user=request.user, confirmed=False).delete()
    device = TOTPDevice.objects.create(user=request.user, name="Authenticator app", confirmed=False)
    return _enrolment_page(request, device, CodeForm())


@login_required
@require_POST
def totp_confirm(request, pk: int):
    """A code from the new app confirms it; the first factor also brings recovery codes, shown once. An
    enrolled person's session must be fresh here too, not only when it started: else a stale session finds an
    abandoned device's key on the wrong-code page, and its code would give that session a fresh proof."""
    if (refused := _may_add_a_factor(request)) is not None:
        return refused
    device = get_object_or_404(TOTPDevice, pk=pk, user=request.user, confirmed=False)
    form = CodeForm(request.POST)
    if not (form.is_valid() and device.verify_token(form.cleaned_data["code"])):
        form.add_error(None, "That code did not match: check the app's clock and try the next one.")
        return _enrolment_page(request, device, form, status=400)
    first = not has_factor(request.user)
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    _record(request, "factor_enrolled", factor="totp")
    _proved(request, device)
    codes = _new_recovery_codes(request) if first else []
    return render(request, "account/recovery_codes.html", {"codes": codes, "next": _safe_next(request, "")})


@transaction.atomic
def _new_recovery_codes(request) -> list[str]:
    StaticDevice.objects.filter(user=request.user).delete()
    device = StaticDevice.objects.create(user=request.user, name="Recovery codes", confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    _record(request, "factor_enrolled", factor="recovery_code", count=RECOVERY_CODES)
    return codes


@login_required
@require_POST
def recovery_codes(request):
    """A new set of recovery codes (the old ones stop working), shown once."""
    if (refused := _may_add_a_factor(request)) is not None:
        return refused
    if not TOTPDevice.objects.devices_for_user(request.user, confirmed=True).exists():
        messages.error(request, "Add an authenticator app first: recovery codes stand in for it.")
        return redirect("second_factor")
    return render(request, "account/recovery_codes.html", {"codes": _new_recovery_codes(request), "next": ""})


@login_required
@require_POST
def remove_factor(request, kind: str, pk: int):
    if (refused := _fresh_or_step_up(request)) is not None:
        return refused
    model = {"totp": TOTPDevice, "recovery_code": StaticDevice, "webauthn": WebAuthnCredential}.get(kind)
    if model is None:
        return redirect("second_factor")
    get_object_or_404(model, pk=pk, user=request.user).delete()
    _record(request, "factor_removed", factor=kind)
    messages.success(request, "Removed.")
    return redirect("second_factor")


# -- passkeys (django-otp-webauthn): its views, with the step-up and the audit records of ours --------
def relying_party_id(request) -> str:
    """The console's own host name, from the Host header Django has checked against ALLOWED_HOSTS, unless
    GATEHOUSE_WEBAUTHN_RP_ID names the (parent) domain."""
    return settings.WEBAUTHN_RP_ID or request.get_host().rsplit(":", 1)[0]


class PasskeyHelper(WebAuthnHelper):
    """A passkey answers only the console's own origin."""

    def get_allowed_origins(self) -> list[str]:
        return [f"{self.request.scheme}://{self.request.get_host()}"]


class StepUpFirst(webauthn_errors.OTPWebAuthnApiError):
    status_code = 403
    default_code = "step_up_required"


class FactorsAtTheIdp(webauthn_errors.OTPWebAuthnApiError):
    status_code = 403
    default_code = "single_sign_on_account"
    default_detail = SSO_FACTORS


def _fresh_for_a_passkey(request) -> None:
    """As adding an app: when it begins and when it completes, so one begun fresh and finished stale proves nothing."""
    if is_sso_account(request.user):
        raise FactorsAtTheIdp()
    if (refused := _stale_to_change_factors(request)) is not None:
        raise StepUpFirst(detail=refused)


class PasskeyRegistrationBegin(BeginCredentialRegistrationView):
    def check_can_register(self):
        super().check_can_register()
        _fresh_for_a_passkey(self.request)


class PasskeyRegistrationComplete(CompleteCredentialRegistrationView):
    def check_can_register(self):
        super().check_can_register()
        _fresh_for_a_passkey(self.request)

    def post(self, *args, **kwargs):
        response = super().post(*args, **kwargs)
        _record(self.request, "factor_enrolled", factor="webauthn")
        presence.remember(self.request.session, "webauthn")
        return response


class PasskeyAuthenticationComplete(CompleteCredentialAuthenticationView):
    """A passkey's assertion: the second factor after the password, or a step-up. Never an SSO account's, whatever
    passkey it holds: its step-up is a fresh sign-in at its IdP (step_up sends it there)."""

    def check_can_authenticate(self):
        super().check_can_authenticate()
        if is_sso_account(self.request.user):
            raise FactorsAtTheIdp()

    def complete_auth(self, device):
        signing_in = not self.request.user.is_verified()
        super().complete_auth(device)
        presence.remember(self.request.session, "webauthn")
        _record(self.request, "second_factor" if signing_in else "step_up", factor="webauthn")
