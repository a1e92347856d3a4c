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
