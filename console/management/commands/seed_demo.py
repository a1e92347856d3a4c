import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from console.roles import ROLES, ADMIN


class Command(BaseCommand):
    help = (
        "Create the demo users analyst, manager and admin. Their password is "
        "GATEHOUSE_DEMO_PASSWORD when set (and is reset to it), otherwise random and printed once."
    )

    def handle(self, *args, **options):
        chosen = os.environ.get("GATEHOUSE_DEMO_PASSWORD", "")
        with transaction.atomic():
            lines = [self._ensure_user(role, chosen) for role in ROLES]
        self.stdout.write("Demo logins:")
        for line in lines:
            self.stdout.write(f"  {line}")

    def _ensure_user(self, role: str, chosen: str) -> str:
        user, created = get_user_model().objects.get_or_create(username=role)
        if not created and not chosen:
            return f"{role:8} (exists; password unchanged — set GATEHOUSE_DEMO_PASSWORD to reset it)"
        password = chosen or secrets.token_urlsafe(12)
        user.set_password(password)
        user.is_staff = role == ADMIN  # the Django admin is one of the admin role's pages
        user.save()
        user.groups.set([Group.objects.get(name=role)])
        return f"{role:8} password: {'(GATEHOUSE_DEMO_PASSWORD)' if chosen else password}"
