"""Existing integrations keep sending what they sent, unless another live integration sent it too."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from investigations.models import Integration

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = [("investigations", "0007_budgets")]


def test_each_integration_is_given_its_name_and_the_sources_only_it_sent():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    old_integration, old_alert = (
        apps.get_model("investigations", "Integration"),
        apps.get_model("investigations", "Alert"),
    )
    made = {}
    for name, revoked, sent in [
        ("lab-siem", False, ["lab-siem", "splunk"]),
        ("collector", False, ["splunk", "zeek", "console"]),
        ("retired", True, ["edr"]),
    ]:
        made[name] = old_integration.objects.create(
            name=name, token_prefix=name, token_hash=name.ljust(64, "0"), revoked_at=timezone.now() if revoked else None
        )
        for source in sent:
            old_alert.objects.create(
                source=source,
                external_id=f"{name}-1",
                title="t",
                severity="low",
                observed_at=timezone.now(),
                integration=made[name],
            )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    sources = dict(Integration.objects.values_list("name", "sources"))
    # splunk was sent by two: neither keeps it; console is the console's own.
    assert sources == {"lab-siem": ["lab-siem"], "collector": ["collector", "zeek"], "retired": ["retired"]}
