"""The identity server on the LDAP adapter, end to end: an admin points it at a real slapd (adapter,
URL, parameters, the bind password as its credential), and the gateway's calls run in the server's
own process (toolserver.launch), with one audit record per call and a write sent once."""

import json
import os
from pathlib import Path

import pytest

from console.manage import administration
from investigations.models import AuditRecord
from tests.toolserver.conftest import read_environ, server_pids
from tests.toolserver.slapd import PEOPLE
from toolserver.gateway import Gateway
from toolserver.models import ToolServer
from toolserver.supervisor import check_connection, get_supervisor, launch_config

pytestmark = pytest.mark.django_db(transaction=True)

DISABLE = {"username": "j.doe", "reason": "Phished: the user ran the attachment."}


def tool_records(tool: str) -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(tool=tool).order_by("seq"))


def test_disable_account_reaches_the_directory_once_with_its_audit_record(identity_on_slapd, context):
    slapd = identity_on_slapd
    gateway = Gateway()
    read = gateway.call("get_user", {"username": "j.doe"}, context)
    assert (read["status"], read["source"], read["data"]["disabled"]) == ("ok", "ldap:identity", False)

    first = gateway.call("disable_account", DISABLE, context)
    assert first == {
        "status": "ok",
        "data": {"username": "j.doe", "disabled": True, "already": False, "action_id": ""},
        "truncated": False,
        "source": "ldap:identity",
    }
    assert slapd.bind_as("j.doe", "jdoe-password-1") == (False, 49)  # invalidCredentials: locked
    written = slapd.read(f"uid=j.doe,{PEOPLE}", "entryCSN")

    again = gateway.call("disable_account", DISABLE, context)  # the same key: the first result, nothing sent
    assert again["data"] == {**first["data"], "replayed": True}
    assert slapd.read(f"uid=j.doe,{PEOPLE}", "entryCSN") == written

    records = tool_records("disable_account")
    assert [record.outcome for record in records] == ["dispatched", "ok", "replayed"]
    (done,) = [record for record in records if record.outcome == "ok"]  # the one record of the write itself
    assert (done.server, done.source, done.backend_status) == ("identity", "ldap:identity", "200")
    assert len({record.idempotency_key for record in records}) == 1


def test_the_bind_password_reaches_only_the_identity_servers_process(identity_on_slapd):
    slapd = identity_on_slapd
    supervisor = get_supervisor()
    supervisor.list_tools("identity")
    (pid,) = server_pids("identity")
    environ = read_environ(pid)
    assert environ["GATEHOUSE_BACKEND_KEY"] == slapd.service_password
    assert (environ["GATEHOUSE_ADAPTER"], environ["GATEHOUSE_BACKEND_URL"]) == ("ldap", slapd.url)
    assert json.loads(environ["GATEHOUSE_BACKEND_PARAMS"])["bind_dn"] == slapd.params()["bind_dn"]
    # Not the worker that runs the model, nor what any other server's launcher is handed.
    assert slapd.service_password not in Path(f"/proc/{os.getpid()}/environ").read_bytes().decode()
    for other in ("siem", "edr", "edr-response", "ticketing", "intel"):
        assert slapd.service_password not in json.dumps(launch_config(other).environment())


def test_check_connection_binds_and_says_when_the_directory_refuses(identity_on_slapd, admin_user):
    slapd = identity_on_slapd
    assert check_connection("identity") == {
        "ok": True,
        "detail": f"reached 127.0.0.1:{slapd.port}; bound as {slapd.params()['bind_dn']}",
    }
    administration.set_credential(ToolServer.objects.get(name="identity"), admin_user, secret="not-the-bind-password")
    result = check_connection("identity")
    assert not result["ok"] and result["detail"].endswith("refused the credential (LDAP result code 49)")
    assert "not-the-bind-password" not in json.dumps(result)


def test_a_write_undone_since_is_sent_again_for_the_same_alert_not_replayed(identity_on_slapd, context):
    """Disabled, re-enabled, then disabled again for the same alert: the second disable reaches the
    directory (replaying the first would report j.doe disabled while she can sign in). A plain repeat
    with nothing undone in between is still the first result, sent nowhere."""
    slapd, gateway = identity_on_slapd, Gateway()
    for tool, binds in [
        ("disable_account", (False, 49)),
        ("enable_account", (True, 0)),
        ("disable_account", (False, 49)),
        ("enable_account", (True, 0)),
    ]:
        result = gateway.call(tool, DISABLE, context)
        assert (result["status"], result["data"].get("replayed")) == ("ok", None), (tool, result)
        assert slapd.bind_as("j.doe", "jdoe-password-1") == binds, tool
    written = slapd.read(f"uid=j.doe,{PEOPLE}", "entryCSN")
    assert gateway.call("enable_account", DISABLE, context)["data"]["replayed"] is True
    assert slapd.read(f"uid=j.doe,{PEOPLE}", "entryCSN") == written
    assert [record.outcome for record in tool_records("disable_account")] == ["dispatched", "ok"] * 2
    assert [record.outcome for record in tool_records("enable_account")] == ["dispatched", "ok"] * 2 + ["replayed"]
