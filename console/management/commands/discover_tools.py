from django.core.management.base import BaseCommand, CommandError

from console.manage import administration
from toolserver.models import ToolServer
from toolserver.supervisor import ServerDidNotStart


class Command(BaseCommand):
    help = (
        "List every tool server's tools from a process of its own and compare them with what admins "
        "accepted. A tool whose description or schema changed is disabled until an admin accepts it "
        "(Tool servers page). Run it after deploying a new release. Exits 1 when a server did not start."
    )

    def handle(self, *args, **options):
        failed = []
        for server in ToolServer.objects.all():
            try:
                changed = administration.discover(server, by="manage.py discover_tools")
            except ServerDidNotStart as exc:
                failed.append(server.name)
                self.stderr.write(f"{server.name:13} {exc}")
                continue
            verdict = f"changed, disabled until accepted: {', '.join(changed)}" if changed else "as accepted"
            self.stdout.write(f"{server.name:13} {verdict}")
        if failed:
            raise CommandError(f"not discovered: {', '.join(failed)}")
