from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction
from django.utils import timezone

from investigations.audit import chain as audit
from investigations.intake.services import (
    create_integration,
    set_grouping,
    set_severity_map,
    set_sources,
    set_start_cap,
)
from investigations.models import Integration

NAME_MAX = Integration._meta.get_field("name").max_length
ACTOR = "manage.py integrations"  # how the audit trail names a change made here


class Command(BaseCommand):
    help = (
        "Manage the integrations allowed to POST alerts to /api/alerts. `create NAME` prints its "
        "token once (only a hash is kept); `list` shows them; `sources NAME SOURCE...` sets the alert "
        "sources it may send (its own name at first); `grouping NAME {rule+host,rule+user,none} MINUTES` "
        "how its alerts join an open investigation; `cap NAME N` its investigations started a minute; "
        "`revoke NAME` stops its token working."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="{create,list,sources,severity,grouping,cap,revoke}"
        )
        actions.add_parser("create", help="create an integration and print its token once").add_argument("name")
        actions.add_parser("list", help="list integrations and their sources (never their tokens)")
        sources = actions.add_parser("sources", help="set the alert sources an integration may send (audited)")
        sources.add_argument("name")
        sources.add_argument("sources", nargs="+", metavar="SOURCE")
        severity = actions.add_parser(
            "severity",
            help="set the integration's severity map (audited): default=SEVERITY and FORMAT:VALUE=SEVERITY, "
            "e.g. wazuh:10=high alertmanager:warning=low; none to clear it",
        )
        severity.add_argument("name")
        severity.add_argument("entries", nargs="*", metavar="KEY=SEVERITY")
        grouping = actions.add_parser(
            "grouping",
            help="group the integration's alerts (audited): by rule+host, rule+user or none, within MINUTES "
            "of the investigation's start",
        )
        grouping.add_argument("name")
        grouping.add_argument("group_by", choices=Integration.GroupBy.values)
        grouping.add_argument("window", type=int, metavar="MINUTES")
        cap = actions.add_parser(
            "cap", help="at most N of its investigations started a minute, the rest held (audited)"
        )
        cap.add_argument("name")
        cap.add_argument("per_minute", type=int, metavar="N")
        actions.add_parser("revoke", help="revoke an integration's token").add_argument("name")

    def handle(self, *args, action, name=None, sources=None, entries=None, **options):
        if action == "create":
            self._create(name)
        elif action == "list":
            self._list()
        elif action == "sources":
            self._sources(name, sources)
        elif action == "severity":
            self._severity(name, entries)
        elif action == "grouping":
            self._set(name, set_grouping, options["group_by"], options["window"])
        elif action == "cap":
            self._set(name, set_start_cap, options["per_minute"])
        else:
            self._revoke(name)

    def _create(self, name: str) -> None:
        name = name.strip()
        if not name or len(name) > NAME_MAX:
            raise CommandError(f"an integration's name is 1 to {NAME_MAX} characters")
        try:
            with transaction.atomic():
                integration, token = create_integration(name, by=ACTOR)
        except IntegrityError:
            raise CommandError(f'an integration named "{name}" already exists') from None
        self.stdout.write(f'Created integration "{integration.name}". Its token (it will not be shown again):')
        self.stdout.write(token)
        self.stdout.write("Send it as the header  Authorization: Bearer <token>  with POST /api/alerts.")
        if integration.sources:
            self.stdout.write(f"It may send alerts of the source: {', '.join(integration.sources)}.")
        else:
            self.stdout.write(
                f'It may send no source yet: set them with  manage.py integrations sources "{name}" SOURCE...'
            )

    def _sources(self, name: str, sources: list[str]) -> None:
        integration = Integration.objects.filter(name=name).first()
        if integration is None:
            raise CommandError(f'no integration named "{name}"; see: manage.py integrations list')
        try:
            changed = set_sources(integration, sources, by=ACTOR)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        integration.refresh_from_db()
        shown = ", ".join(integration.sources)
        self.stdout.write(
            f'Integration "{name}" may send alerts of: {shown}.'
            if changed
            else f'Integration "{name}" already sends: {shown}.'
        )

    def _set(self, name: str, setter, *values) -> None:
        integration = Integration.objects.filter(name=name).first()
        if integration is None:
            raise CommandError(f'no integration named "{name}"; see: manage.py integrations list')
        try:
            changed = setter(integration, *values, by=ACTOR)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        integration.refresh_from_db()
        self.stdout.write(
            f'Integration "{name}" {"now groups" if changed else "already groups"} by {integration.group_by} '
            f"within {integration.group_window_minutes} min and starts at most "
            f"{integration.starts_per_minute} investigations a minute."
        )

    def _severity(self, name: str, entries: list[str]) -> None:
        integration = Integration.objects.filter(name=name).first()
        if integration is None:
            raise CommandError(f'no integration named "{name}"; see: manage.py integrations list')
        severity_map = {}
        for entry in entries:
            key, equals, severity = entry.rpartition("=")
            if not equals or not key:
                raise CommandError(f'"{entry}" is not KEY=SEVERITY')
            severity_map[key] = severity.strip().lower()
        try:
            changed = set_severity_map(integration, severity_map, by=ACTOR)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        integration.refresh_from_db()
        shown = (
            ", ".join(f"{key}={value}" for key, value in integration.severity_map.items()) or "none (the formats' own)"
        )
        self.stdout.write(
            f'Integration "{name}" maps severities: {shown}.'
            if changed
            else f'Integration "{name}" already maps: {shown}.'
        )

    def _list(self) -> None:
        integrations = Integration.objects.order_by("name")
        if not integrations:
            self.stdout.write("No integrations. Create one with: manage.py integrations create NAME")
            return
        row = "{:30} {:12} {:17} {:17} {}"
        self.stdout.write(row.format("NAME", "TOKEN", "CREATED", "LAST USED", "REVOKED"))
        for integration in integrations:
            self.stdout.write(
                row.format(
                    integration.name,
                    integration.token_prefix,
                    _when(integration.created_at),
                    _when(integration.last_used_at, "never"),
                    _when(integration.revoked_at, "no"),
                )
            )
            self.stdout.write(f"  sources: {', '.join(integration.sources) or '(none)'}")

    def _revoke(self, name: str) -> None:
        integration = Integration.objects.filter(name=name).first()
        if integration is None:
            raise CommandError(f'no integration named "{name}"; see: manage.py integrations list')
        # Guarded in the update itself, so a second revoke keeps the first time.
        if Integration.objects.filter(pk=integration.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
            audit.record_admin_change(
                "manage.py integrations",
                "integration_revoked",
                before={},
                after={"integration": name, "sources": integration.sources},
            )
            self.stdout.write(f'Revoked integration "{name}": its token is refused from now on.')
        else:
            integration.refresh_from_db()
            self.stdout.write(f'Integration "{name}" was already revoked at {_when(integration.revoked_at)}.')


def _when(moment, absent: str = "") -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else absent
