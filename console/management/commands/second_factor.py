from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django_otp import devices_for_user

from investigations.audit import chain as audit


class Command(BaseCommand):
    help = (
        "Break-glass for a person who lost their second factor and their recovery codes: `reset USERNAME` "
        "removes every factor of theirs (one audit record); at their next sign-in they enrol again. "
        "`list USERNAME` names their factors."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["list", "reset"])
        parser.add_argument("username")

    def handle(self, *args, action, username, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f'no user named "{username}"')
        devices = list(devices_for_user(user, confirmed=None))
        if action == "list":
            for device in devices:
                self.stdout.write(f"{type(device).__name__} {device.pk} {device.name} confirmed={device.confirmed}")
            return
        for device in devices:
            device.delete()
        audit.record_sign_in(
            "factor_removed", username, None, factor="all", by="manage.py second_factor reset", count=len(devices)
        )
        self.stdout.write(f"Removed {len(devices)} factor(s) of {username}; they enrol again at their next sign-in.")
