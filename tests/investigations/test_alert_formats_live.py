"""The alert formats against the real console process (`manage.py serve`, its own logging): the
Wazuh integrator script posting a documented alert file, and Splunk's token in the URL never in a log line."""

import subprocess
import sys
from pathlib import Path

import httpx2 as httpx
import pytest

from investigations.intake.services import create_integration
from investigations.models import Alert
from tests.support import ROOT

pytestmark = pytest.mark.django_db(transaction=True)
FIXTURES = Path(__file__).parent / "fixtures" / "alerts"
SCRIPT = ROOT / "integrations" / "wazuh" / "custom-gatehouse"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_the_wazuh_integrator_script_posts_a_documented_alert_file(live_console):
    integration, token = create_integration("wazuh")
    hook_url = f"{live_console.url}/api/alerts/wazuh"

    sent = run_script(str(FIXTURES / "wazuh.json"), token, hook_url)
    assert sent.returncode == 0, sent.stderr
    alert = Alert.objects.get(integration=integration)
    assert (alert.source, alert.external_id, alert.title) == (
        "wazuh",
        "1689175961.1157",
        "sshd: authentication failed.",
    )
    assert alert.investigations.count() == 1

    assert run_script(str(FIXTURES / "wazuh.json"), token, hook_url).returncode == 0  # Wazuh sends it again: 200
    assert Alert.objects.filter(integration=integration).count() == 1

    refused = run_script(str(FIXTURES / "wazuh.json"), token + "x", hook_url)
    assert refused.returncode == 1 and "401" in refused.stderr
    assert token not in refused.stderr + refused.stdout
    unreadable = run_script(str(FIXTURES / "README.md"), token, hook_url)
    assert unreadable.returncode == 1


def test_splunks_token_in_the_url_is_in_no_log_line(live_console):
    integration, token = create_integration("splunk")
    body = (FIXTURES / "splunk.json").read_bytes()
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    headers = {"Content-Type": "application/json"}

    accepted = httpx.post(f"{live_console.url}/api/alerts/splunk/{token}", content=body, headers=headers, timeout=30)
    assert accepted.status_code == 201, accepted.text
    # Refusals, each one line in the log (Django's "Unauthorized: <path>", "Bad Request: <path>"):
    assert (
        httpx.post(
            f"{live_console.url}/api/alerts/splunk/{wrong}", content=body, headers=headers, timeout=30
        ).status_code
        == 401
    )
    assert (
        httpx.post(
            f"{live_console.url}/api/alerts/splunk/{token}", content=b"[1]", headers=headers, timeout=30
        ).status_code
        == 400
    )
    assert (
        httpx.post(
            f"{live_console.url}/api/alerts/splunk/{token}?source=x", content=body, headers=headers, timeout=30
        ).status_code
        == 403
    )
    # The log is written by the process as it answers: the last answer's request line is the mark that it has.
    marker = f"/healthz?after-{integration.pk}"
    httpx.get(f"{live_console.url}{marker}", timeout=30)
    log = live_console.log()
    assert marker in log, log[-2000:]
    assert Alert.objects.filter(integration=integration).count() == 1

    assert token not in log and wrong not in log and token[4:20] not in log
    request_lines = [line for line in log.splitlines() if "/api/alerts/splunk/" in line]
    assert len(request_lines) >= 4 + 3, request_lines  # four requests logged, three refusals too
    assert all("/api/alerts/splunk/[redacted]" in line for line in request_lines), request_lines
