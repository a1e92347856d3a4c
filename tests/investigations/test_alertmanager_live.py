"""A real Alertmanager (Debian's prometheus-alertmanager, scripts/alertmanager.sh) sending to a
console process: alerts injected with `amtool alert add` arrive as alerts, its resends (every
repeat_interval) are the same alert, and its resolve is noted on the open investigation.

Production mode only: there the investigation waits for a Celery worker no test starts, so it is
still open when the resolve comes; the embedded console's own worker would have finished it.
"""

import subprocess
from datetime import UTC, datetime

import httpx2 as httpx
import pytest

from investigations.intake.services import create_integration
from investigations.models import Alert, Event
from tests.support import WAIT_S, free_port, listening, stop_process, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.production]
LABELS = ["alertname=DiskAlmostFull", "instance=db-7:9100", "severity=warning", "job=node"]


@pytest.fixture
def alertmanager(tmp_path, live_console):
    """Alertmanager on loopback, its one receiver the console's webhook with an integration's token."""
    _, token = create_integration("alertmanager")
    port = free_port()
    credentials = tmp_path / "token"
    credentials.write_text(token)
    credentials.chmod(0o600)
    config = tmp_path / "alertmanager.yml"
    config.write_text(f"""
route:
  receiver: gatehouse
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 2s
receivers:
  - name: gatehouse
    webhook_configs:
      - url: {live_console.url}/api/alerts/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials_file: {credentials}
""")
    log = open(tmp_path / "alertmanager.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            "/usr/bin/prometheus-alertmanager",
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()
        if not listening(port):
            return False
        try:
            return httpx.get(f"{url}/-/ready", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, timeout=WAIT_S, interval=0.1, what="Alertmanager to be ready")
        yield url, token
    finally:
        stop_process(process)
        log.close()


def amtool(url: str, *args: str) -> None:
    subprocess.run(
        ["/usr/bin/amtool", f"--alertmanager.url={url}", "alert", "add", *args],
        check=True,
        capture_output=True,
        timeout=WAIT_S,
    )


def test_a_real_alertmanager_alert_arrives_once_and_its_resolve_is_noted(alertmanager, live_console):
    url, token = alertmanager
    amtool(url, *LABELS, "--annotation=summary=Disk /var is 97% full")

    alert = wait_until(
        lambda: Alert.objects.filter(source="alertmanager").first(), timeout=WAIT_S, what="the alert to arrive"
    )
    assert alert.title == "DiskAlmostFull: Disk /var is 97% full"
    assert (alert.host, alert.severity) == ("db-7", "medium")
    assert alert.details["raw"]["alert"]["labels"]["job"] == "node"
    investigation = alert.investigations.get()

    # Alertmanager sends the group again every repeat_interval: answered 200, nothing new.
    resent = '"POST /api/alerts/alertmanager HTTP/1.1" 200'
    wait_until(lambda: resent in live_console.log(), timeout=WAIT_S, what="a resend")
    assert Alert.objects.filter(source="alertmanager").count() == 1
    assert alert.investigations.count() == 1

    # The same labels, ended now: Alertmanager sends it resolved.
    amtool(url, *LABELS, f"--end={datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    note = wait_until(
        lambda: Event.objects.filter(investigation=investigation, data__resolved=alert.external_id).first(),
        timeout=WAIT_S,
        what="the resolve to be noted",
    )
    assert "resolved" in note.data["message"]
    assert Alert.objects.filter(source="alertmanager").count() == 1
    assert token not in live_console.log()
