"""A credential is bound to its backend (architecture rule 10, issue 14 item 1).

The attack: whoever may manage a server points it at a host of their own (here a capture listener
on 127.0.0.1), or at another server's key file, presses Check connection and reads the key from the
Authorization header. Each way in is tried for a delegated manager and for an admin, and the capture
listener must never see a credential.
"""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from console.manage import administration
from investigations.models import AuditRecord
from investigations.tokens import create_api_token
from tests.console.test_administration import server_form
from tests.toolserver.conftest import read_environ
from toolserver.config import binding_of
from toolserver.models import Credential, ToolServer
from toolserver.supervisor import check_connection, get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)


class Capture:
    """An HTTP listener standing in for an attacker's host: it answers like the lab's health endpoint
    and keeps the headers of every request it gets."""

    def __init__(self):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(dict(self.headers))
                body = json.dumps({"status": "ok", "scopes": ["captured"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/api"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def capture():
    listener = Capture()
    yield listener
    listener.close()


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_delegated_manager_can_neither_point_a_server_elsewhere_nor_reference_another_key(
    lab, capture, make_user, admin_user
):
    ops = make_user("siem-ops")
    siem = ToolServer.objects.get(name="siem")
    administration.grant(admin_user, "manage_toolserver", siem, ops)
    client = signed_in(ops)

    client.post(reverse("manage:server", args=["siem"]), server_form(siem, url=capture.url))
    stolen = f"file:{lab.credentials_dir}/edr-response.key"
    assert client.post(reverse("manage:set_credential", args=["siem"]), {"reference": stolen}).status_code == 403
    token = create_api_token(ops, "tests")[1]
    api = client.put(
        "/api/manage/servers/siem/credential",
        json.dumps({"reference": stolen, "seen": siem.pointed_at()}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert api.status_code == 403
    assert client.post(reverse("manage:check", args=["siem"])).status_code == 302  # the check itself is theirs to press

    siem.refresh_from_db()
    assert siem.url == "" and not Credential.objects.exists()
    assert capture.seen == []


def test_an_admin_pointing_a_server_elsewhere_revokes_its_credential_and_the_check_sends_none(
    lab, capture, admin_user, settings, admin_client
):
    settings.BACKEND_ALLOWED_HOSTS = ["127.0.0.1"]  # the worst case: every loopback port is allowed
    edr_response = ToolServer.objects.get(name="edr-response")
    administration.set_credential(edr_response, admin_user, secret=lab.keys["edr-response"])
    assert check_connection("edr-response")["ok"]

    response = admin_client.post(
        reverse("manage:server", args=["edr-response"]), server_form(edr_response, url=capture.url)
    )
    assert response.status_code == 302
    revoked = AuditRecord.objects.get(kind=AuditRecord.Kind.ADMIN_CHANGE, outcome="credential_revoked")
    assert revoked.extra["after"] == {"credential": "revoked", "because": "the server now points elsewhere"}

    result = check_connection("edr-response")
    assert result == {
        "ok": False,
        "detail": "no credential (the server's credential was revoked, never set, or set for another backend)",
    }
    # The deployment's own credential (a server with no credential row) does not follow a new URL either.
    siem = ToolServer.objects.get(name="siem")
    administration.update_server(siem, admin_user, {"url": capture.url})
    assert not check_connection("siem")["ok"]
    assert capture.seen == []

    # Set again for the new backend, it goes there: that is the admin's decision, recorded.
    edr_response.refresh_from_db()
    administration.set_credential(edr_response, admin_user, secret="a-key-meant-for-this-backend")
    assert check_connection("edr-response")["ok"]
    assert [headers["Authorization"] for headers in capture.seen] == ["Bearer a-key-meant-for-this-backend"]


def test_a_credential_is_not_sent_where_it_was_not_set_for_even_when_the_row_is_changed_behind_the_service(
    lab, capture, admin_user, settings
):
    settings.BACKEND_ALLOWED_HOSTS = ["127.0.0.1"]
    edr_response = ToolServer.objects.get(name="edr-response")
    administration.set_credential(edr_response, admin_user, secret=lab.keys["edr-response"])
    ToolServer.objects.filter(pk=edr_response.pk).update(url=capture.url)  # a bug elsewhere, or a database edit

    assert binding_of("edr-response").credential_ref == ""
    assert not check_connection("edr-response")["ok"]
    assert capture.seen == []


def test_a_host_off_the_allow_list_is_never_connected_to_even_with_a_credential_set_for_it(lab, capture, admin_user):
    edr = ToolServer.objects.get(name="edr")
    administration.update_server(edr, admin_user, {"url": capture.url})  # past the form, which refuses it
    administration.set_credential(edr, admin_user, reference=f"file:{lab.credentials_dir}/edr.key")

    assert check_connection("edr") == {
        "ok": False,
        "detail": f"127.0.0.1:{capture.port} is not an allowed backend host (GATEHOUSE_BACKEND_ALLOWED_HOSTS)",
    }
    envelope, status = get_supervisor().call("edr", "get_host", {"host": "WS-FIN-07"}, {})
    assert (envelope["reason"], envelope["retryable"], status) == ("edr_not_allowed", False, "not_allowed")
    assert capture.seen == []


def test_a_listed_name_does_not_vouch_for_a_loopback_address(lab, capture, admin_user, settings):
    """A name on the list that resolves to a private or loopback address (DNS rebinding) is refused."""
    settings.BACKEND_ALLOWED_HOSTS = [f"localhost:{capture.port}"]
    edr = ToolServer.objects.get(name="edr")
    administration.update_server(edr, admin_user, {"url": f"http://localhost:{capture.port}/api"})
    administration.set_credential(edr, admin_user, secret=lab.keys["edr"])
    result = check_connection("edr")
    assert not result["ok"] and "which is not an allowed address" in result["detail"]
    assert capture.seen == []


def test_another_servers_key_file_cannot_be_referenced_even_by_an_admin(lab, admin_user):
    siem = ToolServer.objects.get(name="siem")
    for reference in (
        f"file:{lab.credentials_dir}/edr-response.key",
        "file:edr-response.key",
        "file:/etc/hostname",
        f"file:{lab.credentials_dir}/siem/../edr-response.key",
    ):
        with pytest.raises(administration.Refused):
            administration.set_credential(siem, admin_user, reference=reference)
    assert not Credential.objects.exists()


def gatehouse_processes() -> dict[int, dict[str, str]]:
    """Every process of this test run: this one and all it started (consoles, workers, servers), by pid."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                children.setdefault(int(stat.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
        except (OSError, ValueError):
            continue
    found, todo = {}, [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            found[pid] = read_environ(pid)
        except OSError:
            continue
        todo += children.get(pid, [])
    return found


def test_no_gatehouse_process_but_a_servers_own_holds_a_backend_credential(lab, live_console, admin_user):
    edr_response = ToolServer.objects.get(name="edr-response")
    administration.set_credential(edr_response, admin_user, secret=lab.keys["edr-response"])
    for server in lab.keys:
        get_supervisor().list_tools(server)  # every server running, in this process and beside the console
    processes = gatehouse_processes()
    assert live_console.process.pid in processes and len(processes) > len(lab.keys) + 1

    holders = {
        (environ.get("GATEHOUSE_SERVER"), server)
        for pid, environ in processes.items()
        for server, key in lab.keys.items()
        if key in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    }
    assert holders == {(server, server) for server in lab.keys}  # each server's own process, its own key only
