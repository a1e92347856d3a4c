import pytest

from investigations.intake import AlertIn, receive_alert
from toolserver.lab import estate


@pytest.fixture
def settings_offline(settings):
    """The offline model, unpaced: what the tests run on."""
    settings.ANTHROPIC_API_KEY = ""
    settings.OFFLINE_MODEL_DELAY_MS = 0
    return settings


def story_alert(external_id: str, **overrides) -> AlertIn:
    """One of the lab's stories as its SIEM raises it: 1001 phishing, 1002 beacon, 1003 benign."""
    alert = next(alert for alert in estate.demo_alerts() if alert["external_id"] == external_id)
    return AlertIn(**(alert | overrides))


@pytest.fixture
def received(lab, settings_offline):
    """Receive a lab story's alert: (alert, investigation), queued."""

    def receive(external_id: str, **overrides):
        result = receive_alert(story_alert(external_id, **overrides))
        return result.alert, result.investigation

    return receive


@pytest.fixture
def waiting(received):
    """The phishing story's investigation, suspended on its pending request to isolate WS-FIN-07."""
    from investigations import agent

    _, investigation = received("LAB-SIEM-1001")
    agent.run(investigation.pk)
    investigation.refresh_from_db()
    assert investigation.status == "waiting"
    return investigation, investigation.action_requests.get(state="pending", tool="isolate_host")
