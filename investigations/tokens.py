"""People's API tokens: made once, shown once, kept only as a hash."""

import secrets

from django.utils import timezone

from investigations.intake import hash_token
from investigations.models import ApiToken

TOKEN_PREFIX = "ghu_"  # Gatehouse user: recognisable in a leaked-secret scan


def create_api_token(user, name: str) -> tuple[ApiToken, str]:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    api_token = ApiToken.objects.create(user=user, name=name, token_prefix=token[:10], token_hash=hash_token(token))
    return api_token, token


def user_for(token: str):
    """The active user a live token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    api_token = ApiToken.objects.select_related("user").filter(token_hash=hash_token(token), revoked_at__isnull=True).first()
    if api_token is None or not api_token.user.is_active:
        return None
    ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=timezone.now())
    return api_token.user
