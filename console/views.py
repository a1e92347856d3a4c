from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.messages.views import SuccessMessageMixin
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from console import health
from console.signin import is_sso_account
from investigations import tokens


class SignIn(auth_views.LoginView):
    """The password form (as far as GATEHOUSE_PASSWORD_SIGNIN allows) and the single sign-on button."""

    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            password_signin=settings.PASSWORD_SIGNIN,
            sso_name=settings.OIDC_PROVIDER_NAME if settings.OIDC_ISSUER else "",
            sso_refused=self.request.GET.get("sso") == "refused",
            **kwargs,
        )


@login_required
def home(request):
    return render(request, "console/home.html")


@never_cache
@require_GET
async def healthz(request):
    """200 when database, broker and channel layer all answer; 503 naming those that do not."""
    checks = await health.check_all()
    down = [name for name in ("database", "broker", "channel_layer") if checks[name] != "ok"]
    body = {"status": "down" if down else "ok", "down": down, **checks}
    return JsonResponse(body, status=503 if down else 200)


@login_required
def account(request):
    """The signed-in person's own API tokens (to revoke) and the way to change their password."""
    return render(
        request,
        "account/tokens.html",
        {
            "tokens": tokens.tokens_of(request.user),
            "now": timezone.now(),
            "token_days": settings.API_TOKEN_DAYS,
            "sso": is_sso_account(request.user),
        },
    )


@login_required
@require_POST
def revoke_api_token(request, pk: int):
    api_token = tokens.revoke(request.user, pk)
    messages.success(request, f"Token \u201c{api_token.name}\u201d revoked.")
    return redirect("account")


class PasswordChange(SuccessMessageMixin, auth_views.PasswordChangeView):
    """Django's view (the old password, the validators, the session kept); saving the user
    revokes their API tokens (investigations.tokens)."""

    template_name = "account/password_change.html"
    success_url = reverse_lazy("account")
    success_message = "Password changed. Your API tokens were revoked."
