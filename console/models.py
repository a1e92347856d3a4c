"""Accounts are Django's users and groups (roles: core.roles), changed on the People page
(console.manage.administration), never silently.

This module also makes the console app send post_migrate, which keeps the roles' permissions.
"""

from django.conf import settings
from django.db import models


class RoleRequest(models.Model):
    """The admin role asked for someone by one admin; it is theirs once a second admin confirms."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=20)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    requested_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "role"], name="one_request_per_role")]

    def __str__(self) -> str:
        return f"{self.role} for {self.user} (asked by {self.requested_by})"


class SsoIdentity(models.Model):
    """Who an account is at the identity provider: its issuer and subject, never its e-mail or name
    (so an IdP account whose name matches a local one never signs in as it; console.sso)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="one_account_per_subject")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
