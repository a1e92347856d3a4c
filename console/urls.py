from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import sso, views
from console.api import api

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", views.SignIn.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Single sign-on (console.sso): to the IdP, and back with its code; the names are the library's.
    path("oidc/authenticate/", sso.SignInView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", sso.CallbackView.as_view(), name="oidc_authentication_callback"),
    path("account/", views.account, name="account"),
    path("account/tokens/<int:pk>/revoke", views.revoke_api_token, name="revoke_api_token"),
    path("account/password/", views.PasswordChange.as_view(), name="password_change"),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("manage/", include("console.manage.urls")),
    path("", include("investigations.urls")),
]

if settings.LAB_ENABLED:
    urlpatterns.append(path("lab/", include("toolserver.lab.urls")))
