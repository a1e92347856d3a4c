from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import mfa, views
from console.api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", views.account, name="account"),
    path("account/tokens/<int:pk>/revoke", views.revoke_api_token, name="revoke_api_token"),
    path("account/password/", views.PasswordChange.as_view(), name="password_change"),
    path("account/step-up/", mfa.step_up, name="step_up"),
    path("account/second-factor/", mfa.second_factor, name="second_factor"),
    path("account/second-factor/totp/", mfa.totp_start, name="totp_start"),
    path("account/second-factor/totp/<int:pk>/confirm", mfa.totp_confirm, name="totp_confirm"),
    path("account/second-factor/recovery-codes/", mfa.recovery_codes, name="recovery_codes"),
    path("account/second-factor/<str:kind>/<int:pk>/remove", mfa.remove_factor, name="remove_factor"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("manage/", include("console.manage.urls")),
    path("", include("investigations.urls")),
]

if settings.LAB_ENABLED:
    urlpatterns.append(path("lab/", include("toolserver.lab.urls")))
