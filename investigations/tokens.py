"""People's API tokens: made once, shown once, kept only as a hash; they expire, and die with their
user's password or account."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import pre_save
from django.shortcuts import get_object_or_404
from django.utils import timezone

from investigations.intake.services import hash_token
from investigations.models import ApiToken

TOKEN_PREFIX = "ghu_"  # noqa: S105 - a prefix. Gatehouse user: recognisable in a leaked-secret scan


def create_api_token(
    user, name: str, *, decide: bool = False, by: str = "manage.py api_tokens"
) -> tuple[ApiToken, str]:
    """`decide`: the token may approve and reject writes while step-up is on, and so lives hours, not days.
    `by`: who made it, as the trail names them (tokens are made with the command). A token is access given:
    one chained record with it, naming it by prefix only."""
    from investigations.audit import chain as audit

    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    lifetime = timedelta(hours=settings.DECIDE_TOKEN_HOURS) if decide else timedelta(days=settings.API_TOKEN_DAYS)
    with transaction.atomic():
        api_token = ApiToken.objects.create(
            user=user,
            name=name,
            token_prefix=token[:10],
            token_hash=hash_token(token),
            expires_at=timezone.now() + lifetime,
            decide=decide,
        )
        audit.record_admin_change(
            by,
            "api_token_created",
            before={},
            after={
                "user": user.get_username(),
                "token": api_token.token_prefix,
                "name": name,
                "decide": decide,
                "expires_at": api_token.expires_at.isoformat(),
            },
        )
    return api_token, token


def live(tokens=None):
    """Tokens that still work: not revoked, not expired."""
    return (tokens if tokens is not None else ApiToken.objects).filter(
        revoked_at__isnull=True, expires_at__gt=timezone.now()
    )


def token_for(token: str) -> ApiToken | None:
    """The live token row (its user active), or None; its use noted."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    api_token = live().select_related("user").filter(token_hash=hash_token(token)).first()
    if api_token is None or not api_token.user.is_active:
        return None
    ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=timezone.now())
    return api_token


def tokens_of(user):
    """A person's tokens, newest first, for their own page."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-pk")


def revoke(user, pk: int) -> ApiToken:
    """Revoke one of `user`'s own tokens (404 for anyone else's); revoking twice keeps the first time."""
    api_token = get_object_or_404(ApiToken, pk=pk, user=user)
    revoke_token(api_token, f"user:{user.get_username()}", "revoked by its owner")
    return api_token


def revoke_token(api_token: ApiToken, by: str, because: str) -> bool:
    """Revoke one token, recorded; False if it was revoked already (guarded in the update itself, so a second
    revoke keeps the first time and adds no record)."""
    with transaction.atomic():
        if not ApiToken.objects.filter(pk=api_token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
            return False
        _record_revoked(by, api_token.user, [api_token.token_prefix], because)
    return True


def revoke_all(user, because: str = "") -> int:
    live_ones = ApiToken.objects.filter(user=user, revoked_at__isnull=True)
    prefixes = list(live_ones.values_list("token_prefix", flat=True))
    count = live_ones.update(revoked_at=timezone.now())
    if count:
        _record_revoked("system", user, prefixes, because)
    return count


def _record_revoked(by: str, user, prefixes: list[str], because: str) -> None:
    """Access that ends is a change of who can do what: one chained record, tokens named by prefix only."""
    from investigations.audit import chain as audit

    audit.record_admin_change(
        by, "api_tokens_revoked", before={}, after={"user": user.get_username(), "tokens": prefixes, "because": because}
    )


def _revoke_on_password_change_or_deactivation(sender, instance, update_fields=None, raw=False, **kwargs):
    """Whatever changes a password (the password page, the admin, changepassword) or deactivates
    someone saves the user: their tokens are revoked in that save's transaction. Saves that touch
    neither field (last_login at every sign-in) cost nothing."""
    if raw or instance.pk is None:
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return
    before = sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if before is None:
        return
    if before["password"] != instance.password and not _rehashed_at_sign_in(instance, update_fields):
        revoke_all(instance, "the password changed")
    elif before["is_active"] and not instance.is_active:
        revoke_all(instance, "the account was deactivated")


def _rehashed_at_sign_in(user, update_fields) -> bool:
    """Django's re-hash of the same password at sign-in, when its hasher's rounds have gone up (each
    release raises them): AbstractBaseUser.check_password saves the password field alone and clears
    the clear text that set_password keeps for a change, because "password hash upgrades shouldn't
    be considered password changes". A password set anywhere (set_password) keeps its clear text
    until the save, so it still counts as a change; so does one made unusable, which has none."""
    from django.contrib.auth.hashers import is_password_usable

    return (
        getattr(user, "_password", None) is None
        and update_fields is not None
        and set(update_fields) == {"password"}
        and is_password_usable(user.password)
    )


def connect_signals() -> None:
    pre_save.connect(
        _revoke_on_password_change_or_deactivation,
        sender=get_user_model(),
        dispatch_uid="api-tokens-die-with-password-or-account",
    )
