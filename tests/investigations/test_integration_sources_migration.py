"""Existing integrations keep sending what they sent, unless another live integration sent it too."""

import pytest
from django.utils import timezone

from investigations.models import Integration
from tests.migrations import back_to, forward_to_latest

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = [("investigations", "0007_budgets")]


def test_each_integration_is_given_its_name_and_the_sources_only_it_sent():
    apps = back_to(BEFORE)
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

    forward_to_latest()

    sources = dict(Integration.objects.values_list("name", "sources"))
    # splunk was sent by two: neither keeps it; console is the console's own.
    assert sources == {"lab-siem": ["lab-siem"], "collector": ["collector", "zeek"], "retired": ["retired"]}
