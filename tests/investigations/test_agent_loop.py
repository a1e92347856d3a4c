"""The agent loop over real MCP server processes and the lab, with the offline model in the SDK."""

from investigations import agent
from investigations.models import AuditRecord, Event, Investigation


def transcript(investigation: Investigation) -> str:
    return "".join(event.data["text"] for event in investigation.events.filter(kind=Event.Kind.TEXT))


def test_phishing_story_ends_malicious_with_a_saved_verdict(received):
    alert, investigation = received("LAB-SIEM-1001")
    agent.run(investigation.pk)
    investigation.refresh_from_db()
    assert investigation.status == "completed", investigation.end_reason
    assert investigation.verdict == "malicious"
    assert investigation.evidence
    kinds = list(investigation.events.values_list("kind", flat=True))
    assert kinds[-2:] == ["verdict", "status"]
    calls = AuditRecord.objects.filter(correlation_id=investigation.correlation_id)
    assert calls.filter(tool="search_logins", outcome="ok").count() == 1
    print(transcript(investigation))
