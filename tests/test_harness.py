"""The suite's own harness: a console process that does not become ready in time is stopped, not left
behind; a test server's port is one no outgoing connection can take first; a test's flush leaves the
database as Django's flush does."""

import os
import socket
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.models.signals import post_migrate
from guardian.models import GroupObjectPermission

from core.roles import ANALYST
from investigations.models import ToolPolicy
from tests import flushing, support, table_copies
from toolserver.models import Tool, ToolServer


def consoles_running() -> set[int]:
    """Pids of `manage.py serve` processes of this checkout started by this test run (the other runs
    of `make test`, side by side, start and stop their own)."""
    manage = str(support.ROOT / "manage.py").encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError):
            continue
        if manage in cmdline and b"serve" in cmdline and parent == os.getpid():
            pids.add(int(entry.name))
    return pids


@pytest.mark.django_db(transaction=True)
def test_a_console_that_is_not_ready_in_time_is_stopped(monkeypatch):
    before = consoles_running()
    monkeypatch.setattr(support, "READY_S", 0.01)  # far shorter than any console takes to start
    with pytest.raises(AssertionError, match="timed out"):
        support.ConsoleProcess(
            support.console_env(DATABASE_URL=support.database_url_of(connection.settings_dict)), new_session=True
        )
    assert consoles_running() == before


def test_a_servers_port_is_free_and_outside_the_range_outgoing_connections_take_theirs():
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = {support.free_port() for _ in range(20)}
    assert all(1024 <= port < low for port in ports), ports
    assert len(ports) > 1  # picked at random: two runs starting servers at once rarely meet
    for port in ports:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))  # free: a server binds it


def what_migrate_leaves() -> dict:
    """The rows a flush leaves, by what they are rather than by their ids (Django's flush makes new ones):
    every table's count, and what the content types, permissions, roles, catalog and policies hold."""
    return {
        "counts": {model._meta.db_table: model.objects.count() for model in apps.get_models(include_auto_created=True)},
        "content types": sorted(ContentType.objects.values_list("app_label", "model")),
        "permissions": sorted(Permission.objects.values_list("content_type__app_label", "codename", "name")),
        "roles": {
            group.name: sorted(group.permissions.values_list("codename", flat=True)) for group in Group.objects.all()
        },
        "servers": sorted(ToolServer.objects.values_list("name", "adapter", "enabled", "rate_limit_calls", "url")),
        "tools": sorted(Tool.objects.values_list("server__name", "name", "enabled", "description")),
        "policies": sorted(
            (policy.tool, grant.group.name, grant.permission.codename)
            for policy in ToolPolicy.objects.all()
            for grant in GroupObjectPermission.objects.filter(
                content_type=ContentType.objects.get_for_model(ToolPolicy), object_pk=str(policy.pk)
            ).select_related("group", "permission")
        ),
    }


@pytest.mark.django_db(transaction=True)
def test_a_flush_copies_back_the_content_types_and_permissions_and_sends_post_migrate_to_every_other_receiver(
    make_user,
):
    receivers_sent = []

    def probe(sender, **kwargs):  # which receivers post_migrate holds as it sends
        if sender.label == "console":
            receivers_sent.append({receiver[0][0] for receiver in post_migrate.receivers})

    post_migrate.connect(probe, dispatch_uid="harness-probe")
    try:
        call_command("flush", verbosity=0, interactive=False, reset_sequences=True)  # Django's: new ids
        assert ContentType.objects.get_for_model(Tool).pk  # a model's content type, cached with its new id
        make_user("someone", ANALYST)
        Tool.objects.update(enabled=False, description="")
        ToolServer.objects.update(rate_limit_calls=1)
        Group.objects.get(name=ANALYST).permissions.clear()
        GroupObjectPermission.objects.all().delete()
        Permission.objects.filter(codename__startswith="view_").delete()
        changed = what_migrate_leaves()

        call_command("flush", verbosity=0, interactive=False, reset_sequences=False)  # as a test's teardown does
        copied_back = what_migrate_leaves()
        ids = sorted(ContentType.objects.values_list("pk", "app_label", "model"))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id, app_label, model FROM {table_copies.copy_of(ContentType, flushing.KIND)}")  # noqa: S608
            assert ids == sorted(cursor.fetchall())  # the ids a long-lived process cached stay right
        cached, stored = ContentType.objects.get_for_model(Tool).pk, ContentType.objects.get(model="tool").pk
        # Django's own flush, post_migrate whole; this test's teardown then brings the kept ids back, which
        # the session's console has cached (keeping a baseline anew here would leave it new ones).
        call_command("flush", verbosity=0, interactive=False, reset_sequences=True)
    finally:
        post_migrate.disconnect(dispatch_uid="harness-probe")
    written_again = what_migrate_leaves()
    assert copied_back == written_again != changed
    assert written_again["policies"] and all(written_again["roles"].values())
    assert cached == stored  # the cache left from the other ids was emptied
    reset, copying_back, django = receivers_sent
    assert reset >= flushing.LEFT_OUT and django >= flushing.LEFT_OUT
    assert copying_back == reset - flushing.LEFT_OUT  # without the two, and every other receiver sent it
