"""Credentials never leave the server process that owns them (architecture rules 1 and 2).

Every server's credential is a unique canary, set the ways an admin can (sealed, a file of the
server's own in the credentials folder, by name or in its folder). Investigations run with
successes, typed errors, approvals and a rejection. Then every place a secret could leak is
searched for every canary: the model's requests, the events, the websocket frames, the audit
records, every table of the database, the logs and the HTML of every page. And each server process's environment holds its own canary and no other.
An adapter's secret parameter gets the same search: pages, audit records, the database, the logs.
"""

import json
import logging
import secrets

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import Client
from django.urls import reverse

from console.manage import administration
from investigations.approvals import services as approvals
from investigations.intake.services import receive_alert
from investigations.live_messages import EventMessage, SnapshotMessage
from investigations.models import AuditRecord, Event, Investigation
from investigations.runs import agent, llm
from tests.support import accept_as_listed, page_urls, settings_shown, story_alert
from tests.toolserver.conftest import read_environ, server_pids
from tests.websockets import socket
from toolserver.catalog import SERVERS
from toolserver.lab import faults
from toolserver.lab.keys import SERVER_SCOPES, issue_key
from toolserver.models import Tool, ToolServer
from toolserver.supervisor import get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)


def set_canaries(admin_user, tmp_path, settings) -> dict[str, str]:
    """A unique canary per server, accepted by the lab, set as that server's credential."""
    canaries = {server: issue_key(f"{server}-canary", SERVER_SCOPES[server]) for server in SERVERS}  # random: unique
    settings.CREDENTIALS_DIR = tmp_path
    for server, canary in canaries.items():
        row = ToolServer.objects.get(name=server)
        if server in ("edr-response", "ticketing"):  # a mounted secret file: <server>.key, or in <server>/
            path = tmp_path / ("ticketing.key" if server == "ticketing" else "edr-response/mounted.secret")
            path.parent.mkdir(exist_ok=True)
            path.write_text(canary)
            path.chmod(0o600)
            administration.set_credential(row, admin_user, reference=f"file:{path}")
        else:  # sealed in the database
            administration.set_credential(row, admin_user, secret=canary)
    return canaries


def drive(external_id: str, analyst, *, reject: bool = False) -> Investigation:
    """Investigate one lab story to its end, deciding every request it makes."""
    investigation = receive_alert(story_alert(external_id)).investigation
    for _ in range(10):
        agent.run(investigation.pk)
        investigation.refresh_from_db()
        if investigation.status != "waiting":
            return investigation
        for request in investigation.action_requests.filter(state="pending"):
            if reject:
                approvals.reject(request.pk, analyst, "Not this one: a change freeze is on.")
            else:
                approvals.approve(request.pk, analyst)
                approvals.execute(request.pk)
    raise AssertionError(f"{external_id} did not end")


def websocket_frames(investigations, user) -> list[str]:
    """What the sockets send: each investigation's events (its backlog) and the approvals snapshot, each
    exactly its schema (every kind of event a real investigation records)."""

    backlogs = {investigation.pk: investigation.events.count() for investigation in investigations}

    async def receive():
        frames = []
        for pk, events in backlogs.items():
            communicator = await socket(f"/ws/investigations/{pk}/", user)
            assert (await communicator.connect())[0]
            frames += [await communicator.receive_from(timeout=10) for _ in range(events)]
            for frame in frames[-events:]:
                assert EventMessage.model_validate_json(frame).as_json() == json.loads(frame), frame
            await communicator.disconnect()
        communicator = await socket("/ws/approvals/", user)
        assert (await communicator.connect())[0]
        frames.append(await communicator.receive_from(timeout=10))
        assert SnapshotMessage.model_validate_json(frames[-1]).as_json() == json.loads(frames[-1])
        await communicator.disconnect()
        return frames

    return async_to_sync(receive)()


def every_page(users) -> list[str]:
    """The HTML (and JSON) of every page each role reaches, for every object there is."""
    urls = page_urls()
    bodies = []
    for user in users:
        client = Client()
        client.force_login(user)
        for url in urls:
            response = client.get(url)
            assert response.status_code in (200, 302, 403, 404), (url, response.status_code)
            bodies.append(b"".join(response.streaming_content) if response.streaming else response.content)
    return [body.decode() for body in bodies]


def database_dump() -> list[str]:
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        dump = []
        for table in tables:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - the database's own names
            dump += [
                repr(
                    [
                        bytes(value).decode(errors="replace") if isinstance(value, (bytes, memoryview)) else value
                        for value in row
                    ]
                )
                for row in cursor.fetchall()
            ]
    assert "toolserver_credential" in tables and "investigations_auditrecord" in tables
    return dump


def places_holding(canary: str, results: list, users, caplog, capfd, *, shown: str) -> list[str]:
    """Where outside its server's process `canary` appears: results, audit records, the database,
    the pages of `users` (which must show `shown`, the adapter's name: they were rendered), the logs."""
    haystacks = {
        "results": [json.dumps(results)],
        "audit records": [json.dumps(list(AuditRecord.objects.values()), default=str)],
        "database": database_dump(),
        "pages": every_page(users),
    }
    captured = capfd.readouterr()  # last: what rendering the pages logged is searched too
    haystacks["logs"] = [caplog.text, captured.out, captured.err]
    assert any(shown in page for page in haystacks["pages"])
    return [where for where, texts in haystacks.items() if any(canary.lower() in text.lower() for text in texts)]


def test_no_credential_appears_anywhere_but_in_its_own_server_process(
    caplog, capfd, lab, live_console, analyst, manager, admin_user, tmp_path, settings
):
    caplog.set_level(logging.DEBUG)
    llm.offline_model().requests.clear()
    canaries = set_canaries(admin_user, tmp_path, settings)  # logged from here on, like all below

    ended = [drive("LAB-SIEM-1001", analyst)]  # reads, approved writes
    faults.inject("siem", "timeout", delay_ms=3000)
    ended.append(drive("LAB-SIEM-1002", analyst, reject=True))  # a typed error, a rejection
    faults.clear()
    faults.inject("intel", "error_5xx")
    administration.update_tool(Tool.objects.get(name="get_user"), admin_user, enabled=False)
    ended.append(drive("LAB-SIEM-1003", analyst))  # more typed errors: a backend's, tool_disabled
    reasons = set(AuditRecord.objects.exclude(reason="").values_list("reason", flat=True))
    assert {"intel_unavailable", "siem_timeout", "tool_disabled"} <= reasons, reasons
    assert set(AuditRecord.objects.values_list("outcome", flat=True)) >= {"ok", "approved", "rejected", "error"}

    # Each server process holds its own canary, and no other.
    for server, canary in canaries.items():
        get_supervisor().list_tools(server)
        (pid,) = server_pids(server)
        environ = read_environ(pid)
        assert environ["GATEHOUSE_BACKEND_KEY"] == canary
        assert [
            other for other in SERVERS if other != server and any(canaries[other] in v for v in environ.values())
        ] == []
        assert "GATEHOUSE_CREDENTIALS_KEY" not in environ and "GATEHOUSE_CREDENTIALS_DIR" not in environ

    haystacks = {
        "model requests": [json.dumps(list(llm.offline_model().requests))],
        "events": [json.dumps(list(Event.objects.values()), default=str)],
        "websocket frames": websocket_frames(ended, analyst),
        "audit records": [json.dumps(list(AuditRecord.objects.values()), default=str)],
        "database": database_dump(),
        "pages": every_page([admin_user, manager, analyst]),
    }
    captured = capfd.readouterr()  # last: what rendering the pages logged is searched too
    haystacks["logs"] = [caplog.text, captured.out, captured.err, live_console.log()]
    assert len(haystacks["model requests"][0]) > 10_000 and len(haystacks["websocket frames"]) > 50
    assert sum(len(page) for page in haystacks["pages"]) > 100_000
    leaks = [
        (where, server)
        for where, texts in haystacks.items()
        for server, canary in canaries.items()
        if any(canary in text or canary.lower() in text.lower() for text in texts)
    ]
    assert leaks == []
    # What the pages may show of a sealed credential: its fingerprint.
    client = Client()
    client.force_login(admin_user)
    index = client.get(reverse("manage:index")).content.decode()
    for server in ("siem", "edr", "identity", "intel"):
        assert ToolServer.objects.get(name=server).credential.fingerprint in index


def test_no_secret_parameter_of_an_adapter_appears_in_a_page_an_audit_record_the_database_or_the_logs(
    caplog, capfd, vault_adapter, admin_user, manager, settings
):
    """An adapter's secret parameter is set the way an admin sets it (the server's page), changed,
    kept, and revoked by pointing the server elsewhere; it shows nowhere but sealed."""
    caplog.set_level(logging.DEBUG)
    settings.BACKEND_ALLOWED_HOSTS = ["vault.example"]
    canary, rotated = issue_key("param-canary", ()), issue_key("param-canary-2", ())
    client = Client()
    client.force_login(admin_user)
    url = reverse("manage:server", args=["intel"])
    form = {
        "adapter": "vault",
        "url": "",
        "enabled": "on",
        "rate_limit_calls": 30,
        "rate_limit_window_s": 60,
        "param_collection": "ioc-main",
        "param_region": "",
    }

    def save(typed: dict) -> int:  # from the page as it shows the server now
        return client.post(url, form | typed | settings_shown("intel")).status_code

    assert save({"param_api_secret": canary}) == 302
    assert save({"param_collection": "Not Valid", "param_api_secret": rotated}) == 400
    assert save({"param_api_secret": rotated}) == 302
    assert save({"param_api_secret": ""}) == 302  # kept
    sealed = ToolServer.objects.get(name="intel").secret_params
    assert set(sealed) == {"api_secret"}
    haystacks = {
        "audit records": [json.dumps(list(AuditRecord.objects.values()), default=str)],
        "database": database_dump(),
        "pages": every_page([admin_user, manager]),
    }
    assert save({"url": "https://vault.example/api", "param_api_secret": ""}) == 400
    administration.update_server(ToolServer.objects.get(name="intel"), admin_user, {"url": "https://vault.example/api"})
    assert ToolServer.objects.get(name="intel").secret_params == {}
    haystacks["audit records"].append(json.dumps(list(AuditRecord.objects.values()), default=str))
    captured = capfd.readouterr()
    haystacks["logs"] = [caplog.text, captured.out, captured.err]
    assert "secret_params_set" in haystacks["audit records"][0] and any(
        "ioc-main" in page for page in haystacks["pages"]
    )
    leaks = [
        (where, which)
        for where, texts in haystacks.items()
        for which, secret in (("first", canary), ("rotated", rotated))
        if any(secret in text or secret.lower() in text.lower() for text in texts)
    ]
    assert leaks == []


def test_no_ldap_bind_password_appears_in_a_result_an_audit_record_a_page_the_database_or_the_logs(
    caplog, capfd, slapd, admin_user, manager, settings
):
    """The identity server on a real slapd (toolserver/adapters/ldap.py): its bind password, a
    unique canary, is set as an admin sets it, used for reads, a write, a refused write and a check
    connection, then searched for everywhere outside the server's process."""
    from toolserver.gateway import CallContext, Gateway
    from toolserver.supervisor import check_connection

    caplog.set_level(logging.DEBUG)
    canary = slapd.service_password
    settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{slapd.port}"]
    identity = ToolServer.objects.get(name="identity")
    administration.update_server(identity, admin_user, {"adapter": "ldap", "url": slapd.url, "params": slapd.params()})
    administration.set_credential(identity, admin_user, secret=canary)
    gateway, context = (
        Gateway(),
        CallContext(correlation_id="inv-canary", trigger="alert-canary", approval="canary-approval"),
    )
    results = [
        gateway.call("get_user", {"username": "j.doe"}, context),
        gateway.call("get_user", {"username": "nobody"}, context),
        gateway.call("disable_account", {"username": "j.doe", "reason": "Canary: disable it."}, context),
        gateway.call("disable_account", {"username": "j.doe", "reason": "Canary: disable it."}, context),
    ]
    assert [result["status"] for result in results] == ["ok", "error", "ok", "ok"]
    checks = [check_connection("identity")]
    slapd.stop()
    results.append(gateway.call("enable_account", {"username": "j.doe", "reason": "Canary: enable it."}, context))
    assert results[-1]["reason"] == "ldap_unavailable"
    checks.append(check_connection("identity"))
    assert [check["ok"] for check in checks] == [True, False]
    assert places_holding(canary, results + checks, [admin_user, manager], caplog, capfd, shown="ldap") == []


def test_no_taxii_password_appears_in_a_result_an_audit_record_a_page_the_database_or_the_logs(
    caplog, capfd, tmp_path, admin_user, manager, settings
):
    """The intel server on a real TAXII 2.1 server (medallion; toolserver/adapters/taxii.py): the feed
    account's password (HTTP basic), a unique canary, is set as an admin sets it, used for lookups and
    a check connection, and a failed lookup once the feed is gone; then searched for everywhere
    outside the server's process, which holds it."""
    import secrets

    from tests.toolserver.taxii_server import Medallion, indicator
    from toolserver.gateway import CallContext, Gateway
    from toolserver.supervisor import check_connection

    caplog.set_level(logging.DEBUG)
    canary = f"taxii-canary-{secrets.token_urlsafe(24)}"
    feed = Medallion(tmp_path, reader_password=canary)
    try:
        feed.publish(indicator("[domain-name:value = 'c2.evil.example']", indicator_types=["malicious-activity"]))
        settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{feed.port}"]
        intel = ToolServer.objects.get(name="intel")
        administration.update_server(intel, admin_user, {"adapter": "taxii", "url": feed.url, "params": feed.params()})
        administration.set_credential(ToolServer.objects.get(name="intel"), admin_user, secret=canary)
        gateway, context = Gateway(), CallContext(correlation_id="inv-taxii-canary", trigger="alert-taxii-canary")
        results = [
            gateway.call("lookup_indicator", {"kind": "domain", "value": "c2.evil.example"}, context),
            gateway.call("lookup_indicator", {"kind": "ip", "value": "203.0.113.9"}, context),
        ]
        checks = [check_connection("intel")]
        pids = server_pids("intel")
        assert pids and all(read_environ(pid)["GATEHOUSE_BACKEND_KEY"] == canary for pid in pids)
    finally:
        feed.stop()
    results.append(gateway.call("lookup_indicator", {"kind": "domain", "value": "c2.evil.example"}, context))
    checks.append(check_connection("intel"))
    assert [result.get("status") for result in results] == ["ok", "ok", "error"], results
    assert results[0]["data"]["verdict"] == "malicious" and results[2]["reason"] == "taxii_unavailable"
    assert [check["ok"] for check in checks] == [True, False]
    assert places_holding(canary, results + checks, [admin_user, manager], caplog, capfd, shown="taxii") == []


@pytest.mark.parametrize("vendor, index", [("splunk", "security"), ("elastic", "logs-*")])
def test_no_siem_token_or_api_key_appears_outside_the_siem_server_process(
    vendor, index, caplog, capfd, admin_user, manager, settings
):
    """The siem server on Splunk or Elasticsearch (a recorded stand-in of the vendor's API,
    tests/toolserver/siem_stand_in.py, that refuses any other credential): the Splunk token or the
    Elastic API key, a unique canary, is set as an admin sets it, used for searches, a throttled
    search, a check connection and a failed one, then searched for everywhere outside the
    server's process, which holds it."""
    from tests.toolserver.siem_stand_in import ElasticStandIn, SplunkStandIn
    from toolserver.gateway import CallContext, Gateway
    from toolserver.supervisor import check_connection

    caplog.set_level(logging.DEBUG)
    canary = f"{vendor}-canary-{secrets.token_urlsafe(24)}"
    stand_in = {"splunk": SplunkStandIn, "elastic": ElasticStandIn}[vendor](canary)
    try:
        settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{stand_in.port}"]
        siem = ToolServer.objects.get(name="siem")
        administration.update_server(
            siem, admin_user, {"adapter": vendor, "url": stand_in.url, "params": {"index": index}}
        )
        administration.set_credential(ToolServer.objects.get(name="siem"), admin_user, secret=canary)
        gateway, context = Gateway(), CallContext(correlation_id="inv-canary-siem", trigger="alert-canary-siem")
        results = [
            gateway.call("search_logins", {"user": "j.doe"}, context),
            gateway.call("search_events", {"host": "WS-FIN-07", "kind": "process_start"}, context),
        ]
        checks = [check_connection("siem")]
        assert [result["status"] for result in results] == ["ok", "ok"] and results[0]["data"]
        pids = server_pids("siem")
        assert pids and all(read_environ(pid)["GATEHOUSE_BACKEND_KEY"] == canary for pid in pids)
        assert stand_in.requests and all(seen.authorization.endswith(canary) for seen in stand_in.requests)
        stand_in.fail("*", 429, b"{}", {"Retry-After": "5"}, sticky=True)
        results.append(gateway.call("search_events", {"user": "j.doe"}, context))
        stand_in.close()
        results.append(gateway.call("search_logins", {"user": "j.doe"}, context))
        checks.append(check_connection("siem"))
    finally:
        stand_in.close()
    assert [result.get("reason") for result in results[2:]] == [f"{vendor}_rate_limited", f"{vendor}_unavailable"]
    assert [check["ok"] for check in checks] == [True, False]
    assert places_holding(canary, results + checks, [admin_user, manager], caplog, capfd, shown=vendor) == []


def test_no_misp_api_key_appears_in_a_result_an_audit_record_a_page_the_database_or_the_logs(
    caplog, capfd, misp_server, admin_user, manager, settings
):
    """The intel server on MISP (toolserver/adapters/misp.py, against the stand-in of MISP's API in
    tests/toolserver/misp_server.py): its API key, a unique canary, is set as an admin sets it, used
    for lookups, a check connection and a refused lookup once MISP revokes it, then searched for
    everywhere outside the server's process."""
    import secrets

    from tests.toolserver.misp_server import attribute
    from toolserver.gateway import CallContext, Gateway
    from toolserver.supervisor import check_connection

    caplog.set_level(logging.DEBUG)
    canary = secrets.token_hex(20)  # a MISP auth key is 40 characters
    misp_server.key = canary
    misp_server.publish(attribute("c2.evil.example", "domain", info="C2", threat_level_id="1"))
    settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{misp_server.port}"]
    intel = ToolServer.objects.get(name="intel")
    administration.update_server(intel, admin_user, {"adapter": "misp", "url": misp_server.url, "params": {}})
    administration.set_credential(ToolServer.objects.get(name="intel"), admin_user, secret=canary)
    gateway, context = Gateway(), CallContext(correlation_id="inv-misp-canary", trigger="alert-misp-canary")
    results = [
        gateway.call("lookup_indicator", {"kind": "domain", "value": "c2.evil.example"}, context),
        gateway.call("lookup_indicator", {"kind": "ip", "value": "203.0.113.9"}, context),
    ]
    checks = [check_connection("intel")]
    misp_server.key = "revoked-" + canary[::-1]  # MISP no longer accepts the key
    results.append(gateway.call("lookup_indicator", {"kind": "domain", "value": "c2.evil.example"}, context))
    checks.append(check_connection("intel"))
    assert [result.get("reason") for result in results] == [None, None, "misp_forbidden"]
    assert [check["ok"] for check in checks] == [True, False]
    assert all(seen.authorization == canary for seen in misp_server.requests)  # it was used
    assert places_holding(canary, results + checks, [admin_user, manager], caplog, capfd, shown="misp") == []


def test_no_falcon_secret_nor_jira_token_appears_outside_their_server_processes(
    caplog, capfd, falcon, jira, admin_user, manager, settings
):
    """edr-response on CrowdStrike Falcon and ticketing on Jira (stand-ins of their APIs on loopback,
    tests/toolserver/vendor_standins.py): the Falcon API client's secret and the Jira API token, unique
    canaries, are set as an admin sets them and used by the real server processes for writes, a
    repeat, a failure and Check connection; then searched for everywhere outside those processes."""
    from tests.toolserver.vendor_standins import FALCON_CLIENT_ID, JIRA_EMAIL
    from toolserver.gateway import CallContext, Gateway
    from toolserver.supervisor import check_connection

    caplog.set_level(logging.DEBUG)
    settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{falcon.port}", f"127.0.0.1:{jira.port}"]
    edr, ticketing = ToolServer.objects.get(name="edr-response"), ToolServer.objects.get(name="ticketing")
    params = {"client_id": FALCON_CLIENT_ID}
    administration.update_server(edr, admin_user, {"adapter": "crowdstrike", "url": falcon.url, "params": params})
    administration.set_credential(edr, admin_user, secret=falcon.secret)
    params = {"project_key": "SEC", "email": JIRA_EMAIL}
    administration.update_server(ticketing, admin_user, {"adapter": "jira", "url": jira.url, "params": params})
    administration.set_credential(ticketing, admin_user, secret=jira.token)
    gateway = Gateway()
    context = CallContext(correlation_id="inv-canary", trigger="alert-canary", approval="canary-approval")
    isolate = {"host": "WS-FIN-07", "reason": "Canary: contain the host."}
    ticket = {"title": "Canary ticket", "body": "Opened by the canary test.", "severity": "low"}
    results = [
        gateway.call("isolate_host", isolate, context),
        gateway.call(
            "isolate_host",
            isolate,
            CallContext(correlation_id="inv-canary", trigger="alert-canary-2", approval="canary-approval-2"),
        ),
        gateway.call("open_ticket", ticket, context),
    ]
    results.append(gateway.call("add_comment", {"ticket_id": results[2]["data"]["ticket_id"], "body": "Hi."}, context))
    assert [result["status"] for result in results] == ["ok"] * 4, results
    assert results[1]["data"]["already_isolated"] is True and len(falcon.actions) == 1
    falcon.tokens.clear()  # the server's token revoked: it fetches another, and that fetch fails
    falcon.fail("/oauth2/token", 500)
    results.append(gateway.call("release_host", {"host": "WS-FIN-07", "reason": "Canary: release it."}, context))
    jira.fail("/rest/api/3/search/jql", 401)
    other_alert = CallContext(correlation_id="inv-canary", trigger="alert-canary-3", approval="canary-approval-3")
    results.append(gateway.call("open_ticket", ticket, other_alert))
    assert [result.get("reason") for result in results[-2:]] == ["crowdstrike_unavailable", "jira_forbidden"]
    checks = [check_connection("edr-response"), check_connection("ticketing")]
    assert [check["ok"] for check in checks] == [True, True], checks
    # The canaries were used, by their own server processes only.
    assert any(falcon.secret in request.body.decode() for request in falcon.seen("POST", "/oauth2/token"))
    assert jira.creates and all("Authorization" in request.headers for request in jira.requests)
    for server, own, other in (("edr-response", falcon.secret, jira.token), ("ticketing", jira.token, falcon.secret)):
        (pid,) = server_pids(server)
        environ = read_environ(pid)
        assert environ["GATEHOUSE_BACKEND_KEY"] == own and not any(other in value for value in environ.values())
    users = [admin_user, manager]
    assert places_holding(falcon.secret, results + checks, users, caplog, capfd, shown="crowdstrike") == []
    assert places_holding(jira.token, results + checks, users, caplog, capfd, shown="jira") == []


def test_an_external_servers_credential_reaches_only_its_process(caplog, capfd, admin_user, manager, tmp_path):
    """An external MCP server (server-memory over stdio) gets its credential in the variable it expects;
    after it is registered, discovered, accepted, read and written, the credential is in its process's
    environment and nowhere else: not the pages, the audit records, the database or the logs."""
    from tests.toolserver.test_external_servers import MEMORY_JS, node_pids
    from toolserver.gateway import CallContext, Gateway

    caplog.set_level(logging.DEBUG)
    canary = f"external-canary-{secrets.token_hex(12)}"
    server = administration.register_external_server(
        admin_user,
        {
            "name": "memory",
            "command": "node",
            "args": [str(MEMORY_JS)],
            "env": {"MEMORY_FILE_PATH": str(tmp_path / "memory.jsonl")},
            "credential_env": "MEMORY_TOKEN",
        },
    )
    administration.set_credential(server, admin_user, secret=canary)
    try:
        administration.discover(server)
        accept_as_listed(Tool.objects.get(name="memory__read_graph"), admin_user, access="read")
        accept_as_listed(
            Tool.objects.get(name="memory__create_entities"), admin_user, access="write", target_args=["entities"]
        )
        context = CallContext(correlation_id="inv-canary-ext", trigger="alert-canary-ext", approval="approved")
        entity = {"name": "ws-fin-07", "entityType": "host", "observations": ["seen"]}
        results = [
            Gateway().call("memory__create_entities", {"entities": [entity]}, context),
            Gateway().call("memory__read_graph", {}, context),
        ]
        assert [result["status"] for result in results] == ["ok", "ok"]
        [pid] = node_pids()
        assert read_environ(pid)["MEMORY_TOKEN"] == canary
        users = [admin_user, manager]
        assert places_holding(canary, results, users, caplog, capfd, shown="memory__create_entities") == []
    finally:
        get_supervisor().restart("memory")
