"""People's API tokens."""

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A person's token for the API outside the browser (approve from a script or a chat bot).

    It acts with its user's permissions, re-checked on every request. Shown once; kept as a hash.
    It expires (GATEHOUSE_API_TOKEN_DAYS) and is revoked when its user's password changes or the
    user is deactivated (investigations/tokens.py).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80, help_text="What it is for.")
    token_prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    # Scoped to decide: only such a token approves or rejects a write while step-up is on (a chat bot);
    # it lives GATEHOUSE_DECIDE_TOKEN_HOURS (investigations/presence.py).
    decide = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.user} / {self.name}"
