import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.roles import ADMIN, ROLES
from investigations.audit import chain as audit


class Command(BaseCommand):
    help = (
        "Create the demo users analyst, manager and admin (password: GATEHOUSE_DEMO_PASSWORD when "
        "set, and reset to it; otherwise random and printed once). With the lab enabled, rebuild its "
        "estate, issue each tool server its lab key, and receive the lab's phishing alert, whose "
        "investigation the first worker to start runs."
    )

    def handle(self, *args, **options):
        if settings.PRODUCTION and not settings.LAB_ENABLED:  # a demo's accounts have no place in a real console
            raise CommandError(
                "seed_demo makes demo accounts (admin, analyst, manager): not in production mode without the lab"
            )
        if settings.LAB_ENABLED:
            call_command("seed_lab", stdout=self.stdout)
            call_command("lab_keys", write_dir=settings.CREDENTIALS_DIR, stdout=self.stdout)
            self._demo_investigation()
        chosen = os.environ.get("GATEHOUSE_DEMO_PASSWORD", "")
        with transaction.atomic():
            lines = [self._ensure_user(role, chosen) for role in ROLES]
        self.stdout.write("Demo logins:")
        for line in lines:
            self.stdout.write(f"  {line}")

    def _demo_investigation(self) -> None:
        from investigations.intake.services import AlertIn, receive_alert
        from toolserver.lab.estate import demo_alerts

        received = receive_alert(AlertIn(**demo_alerts()[0]))  # the phishing story
        state = "queued" if received.created else f"already received; {received.investigation.status}"
        self.stdout.write(f"Demo investigation: /investigations/{received.investigation.pk}/ ({state})")

    def _ensure_user(self, role: str, chosen: str) -> str:
        user, created = get_user_model().objects.get_or_create(username=role)
        if not created and not chosen:
            return f"{role:8} (exists; password unchanged — set GATEHOUSE_DEMO_PASSWORD to reset it)"
        password = chosen or secrets.token_urlsafe(12)
        user.set_password(password)
        user.is_staff = role == ADMIN  # the Django admin is one of the admin role's pages
        user.save()
        user.groups.set([Group.objects.get(name=role)])
        # Who may do what changed: recorded as every role change is (architecture rule 11), never the password.
        audit.record_admin_change(
            "manage.py seed_demo", "demo_account_set", before={}, after={"user": role, "role": role}
        )
        return f"{role:8} password: {'(GATEHOUSE_DEMO_PASSWORD)' if chosen else password}"
