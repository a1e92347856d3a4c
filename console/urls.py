from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog
from django_otp_webauthn import views as webauthn

from console import mfa, sso, views
from console.api import api

# django-otp-webauthn's endpoints under its namespace (its template tags reverse them), with ours where
# the step-up and the audit records come in (console.mfa).
passkeys = (
    [
        path("registration/begin/", mfa.PasskeyRegistrationBegin.as_view(), name="credential-registration-begin"),
        path(
            "registration/complete/", mfa.PasskeyRegistrationComplete.as_view(), name="credential-registration-complete"
        ),
        path(
            "authentication/begin/",
            webauthn.BeginCredentialAuthenticationView.as_view(),
            name="credential-authentication-begin",
        ),
        path(
            "authentication/complete/",
            mfa.PasskeyAuthenticationComplete.as_view(),
            name="credential-authentication-complete",
        ),
        path("jsi18n/", JavaScriptCatalog.as_view(packages=["django_otp_webauthn"]), name="js-i18n-catalog"),
    ],
    "otp_webauthn",
)

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", views.SignIn.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Single sign-on (console.sso): to the IdP, and back with its code; the names are the library's.
    path("oidc/authenticate/", sso.SignInView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", sso.CallbackView.as_view(), name="oidc_authentication_callback"),
    path("oidc/step-up/", sso.StepUpView.as_view(), name="oidc_step_up"),
    path("account/", views.account, name="account"),
    path("account/tokens/<int:pk>/revoke", views.revoke_api_token, name="revoke_api_token"),
    path("account/password/", views.PasswordChange.as_view(), name="password_change"),
    path("account/step-up/", mfa.step_up, name="step_up"),
    path("account/second-factor/", mfa.second_factor, name="second_factor"),
    path("account/second-factor/totp/", mfa.totp_start, name="totp_start"),
    path("account/second-factor/totp/<int:pk>/confirm", mfa.totp_confirm, name="totp_confirm"),
    path("account/second-factor/recovery-codes/", mfa.recovery_codes, name="recovery_codes"),
    path("account/second-factor/<str:kind>/<int:pk>/remove", mfa.remove_factor, name="remove_factor"),
    path("webauthn/", include(passkeys)),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("manage/", include("console.manage.urls")),
    path("", include("investigations.urls")),
]

if settings.LAB_ENABLED:
    urlpatterns.append(path("lab/", include("toolserver.lab.urls")))
