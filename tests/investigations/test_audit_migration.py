"""Records written before the chain existed are linked, in the order they were written, by the migration."""

import pytest
from django.utils import timezone

from investigations.audit import chain as audit
from tests.migrations import back_to, forward_to_latest

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = [("investigations", "0005_action_request_notified_at")]
AFTER = [("investigations", "0006_audit_chain")]


def test_existing_records_are_chained_and_then_guarded():
    old = back_to(BEFORE).get_model("investigations", "AuditRecord")
    for tool in ("get_host", "search_logins", "isolate_host"):
        old.objects.create(created_at=timezone.now(), tool=tool, outcome="ok", actor="agent", latency_ms=1.23456)

    forward_to_latest()

    assert audit.verify_database() == (3, None)
    record = audit.append(kind="tool_call", tool="get_user", outcome="ok", actor="agent")
    assert record.seq == 4
    assert audit.verify_database() == (4, None)
