"""The visibility rule's plan on PostgreSQL: a user granted a few of many investigations gets them
through the primary key index, not by reading every investigation (what guardian's own
`get_objects_for_user` did: `id::varchar IN (SELECT object_pk ...)`, seconds at 100,000).
The rule itself (who sees what) is tests/investigations/test_visibility.py."""

import json

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone
from guardian.shortcuts import assign_perm

from investigations.models import Alert, Investigation
from investigations.models.runs import VIEW
from investigations.runs.selectors import listing

pytestmark = [pytest.mark.production, pytest.mark.django_db]

MANY = 5_000
TABLE = Investigation._meta.db_table


def many_investigations() -> list[int]:
    now = timezone.now()
    alerts = Alert.objects.bulk_create(
        Alert(source="test", external_id=f"PLAN-{n}", title="Plan", severity="low", observed_at=now)
        for n in range(MANY)
    )
    made = Investigation.objects.bulk_create(
        Investigation(alert=alert, model="plan", budget_tool_calls=1, budget_tokens=1, budget_seconds=1)
        for alert in alerts
    )
    return [investigation.pk for investigation in made]


def scans_of_investigations(plan: dict) -> list[dict]:
    """The plan's nodes that read the investigation table."""
    found = [plan] if plan.get("Relation Name") == TABLE else []
    for child in plan.get("Plans", []):
        found += scans_of_investigations(child)
    return found


def test_a_granted_users_list_reads_investigations_through_the_primary_key_index(make_user):
    pks = many_investigations()
    granted = make_user("granted")  # no role: only the grants
    team = Group.objects.create(name="team")
    granted.groups.add(team)
    for pk in pks[:40:2]:
        assign_perm(VIEW, granted, Investigation(pk=pk))
    for pk in pks[1:40:2]:
        assign_perm(VIEW, team, Investigation(pk=pk))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    investigations = listing(granted)
    assert set(investigations.values_list("pk", flat=True)) == set(pks[:40])
    # The list page's two queries: its first page, and the count of pages.
    for query in (investigations[:50], investigations.values("pk")):
        plan = json.loads(query.explain(format="json"))[0]["Plan"]
        scans = scans_of_investigations(plan)
        assert scans, plan
        for scan in scans:
            assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), json.dumps(plan, indent=1)
            assert scan["Index Name"] == f"{TABLE}_pkey" and "id =" in scan.get("Index Cond", ""), json.dumps(
                plan, indent=1
            )
