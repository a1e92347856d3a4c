"""Migration 0014 keeps what the old notified_at said: a request whose approvers were emailed has a sent
email delivery, so the first sweep after the upgrade does not email them again; one not yet told is."""

from datetime import timedelta

import pytest
from django.utils import timezone

from investigations.approvals.channels import deliveries
from investigations.approvals.services import ensure_policies
from investigations.models import ChannelDelivery
from tests.migrations import back_to, forward_to_latest

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE = [("investigations", "0013_notify_claim")]


def test_requests_already_emailed_stay_told_and_the_others_are_told_once(settings, mailoutbox, make_user):
    old = back_to(BEFORE)
    now = timezone.now()
    alert = old.get_model("investigations", "Alert").objects.create(
        source="test", external_id="MIG-1", title="Test alert", severity="high", observed_at=now
    )
    investigation = old.get_model("investigations", "Investigation").objects.create(
        alert=alert, model="gatehouse-offline-1", budget_tool_calls=10, budget_tokens=10_000, budget_seconds=60
    )
    Request = old.get_model("investigations", "ActionRequest")
    common = {
        "investigation": investigation,
        "tool": "isolate_host",
        "server": "edr-response",
        "arguments": {},
        "target": "host=ws-fin-07",
        "idempotency_key": "k" * 64,
        "expires_at": now + timedelta(hours=1),
    }
    emailed = Request.objects.create(tool_use_id="toolu_emailed01", notified_at=now - timedelta(minutes=1), **common)
    untold = Request.objects.create(tool_use_id="toolu_untold001", notify_claimed_until=now, **common)
    Request.objects.filter(pk__in=[emailed.pk, untold.pk]).update(created_at=now - timedelta(minutes=30))

    forward_to_latest()

    told = ChannelDelivery.objects.get(request_id=emailed.pk)
    assert (told.channel, told.kind, told.state, told.sent_at) == ("email", "overdue", "sent", emailed.notified_at)
    assert not ChannelDelivery.objects.filter(request_id=untold.pk).exists()

    ensure_policies()
    make_user("on-call", "analyst", email="oncall@soc.example")
    settings.APPROVAL_NOTIFY_AFTER_S = 600
    deliveries.sweep()
    (mail,) = mailoutbox
    assert f"/approvals/{untold.pk}/" in mail.body
