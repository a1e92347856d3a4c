"""One target, one key (issue 13 item 4): the host's id and its name, in any case, are one host; and the
risk note comes from the backend, not from whatever the model chose to read first."""

import pytest

from investigations.approvals import services as approvals
from investigations.models import Investigation
from investigations.runs import services
from toolserver.gateway import Gateway
from toolserver.lab import estate
from toolserver.lab.models import LabWrite

pytestmark = pytest.mark.django_db(transaction=True)


def ask(investigation, tool_use_id: str, tool: str, **arguments):
    """The request the agent makes for this tool call, as a worker holding the investigation's lease."""
    owner = services.claim(investigation.pk) or Investigation.objects.get(pk=investigation.pk).lease_owner
    use = {"id": tool_use_id, "name": tool, "input": {**arguments, "reason": "Seen beaconing in this alert."}}
    return approvals.request_action(investigation, use, owner=owner, gateway=Gateway())


def test_a_hosts_id_and_its_name_in_another_case_give_one_key_and_one_isolation(received, analyst):
    _, investigation = received("LAB-SIEM-1001")
    by_id = ask(investigation, "toolu_by_id", "isolate_host", host=estate.PHISHED_HOST_ID)
    by_name = ask(investigation, "toolu_by_name", "isolate_host", host=estate.PHISHED_HOST.lower())
    assert by_id.idempotency_key == by_name.idempotency_key
    assert by_id.target == by_name.target == "host=ws-fin-07"
    for request in (by_id, by_name):
        approvals.approve(request.pk, analyst)
        approvals.execute(request.pk)
    assert LabWrite.objects.count() == 1  # the second reached no backend: its key was already done


def test_the_risk_of_isolating_a_domain_controller_is_named_though_the_model_never_looked_it_up(received):
    _, investigation = received("LAB-SIEM-1001")
    request = ask(investigation, "toolu_dc", "isolate_host", host="H-1001")
    assert "host is a domain controller: isolating it stops sign-ins across the domain" in request.risk
    assert "host criticality is critical" in request.risk
    assert request.target == f"host={estate.DOMAIN_CONTROLLER.lower()}"
