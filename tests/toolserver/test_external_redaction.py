"""An external server that echoes its own credential never hands it on (toolserver.launch's relay).

server-everything's `get-env` answers with its whole environment, its credential included. The
relay that started it, the only other process holding that credential, replaces it (raw, base64,
URL-encoded, JSON-escaped) with a fixed marker in every line before the worker reads it: the
result, the audit records and the database never hold it. The relay and its server stop together.
"""

import base64
import json
import os
import secrets
import signal
import urllib.parse

import pytest

from console.manage import administration
from investigations.models import AuditRecord
from tests.support import accept_as_listed, wait_until
from tests.test_canary import database_dump
from tests.toolserver.conftest import alive, children, read_environ, server_pids
from tests.toolserver.test_external_everything import CONTEXT, EVERYTHING_JS, HTTP_CANARY, everything_http  # noqa: F401
from toolserver.gateway import Gateway
from toolserver.models import Tool
from toolserver.redaction import MARKER
from toolserver.supervisor import get_supervisor

pytestmark = pytest.mark.django_db(transaction=True)

# A quote and a backslash: the credential is JSON-escaped twice in get-env's answer (its JSON, in a JSON-RPC line).
CANARY = f'echo-canary-{secrets.token_hex(10)}"q\\z'


@pytest.fixture
def echoing(admin_user):
    server = administration.register_external_server(
        admin_user,
        {"name": "echoing", "command": "node", "args": [str(EVERYTHING_JS), "stdio"], "credential_env": "ECHO_TOKEN"},
    )
    administration.set_credential(server, admin_user, secret=CANARY)
    administration.discover(server)
    for name in ("get-env", "echo"):
        accept_as_listed(Tool.objects.get(name=f"echoing__{name}"), admin_user, access="read")
    yield server
    get_supervisor().restart("echoing")


def holds(canary: str, text: str) -> bool:
    return canary in text or canary.lower() in text.lower()


def test_a_server_that_prints_its_credential_hands_on_the_marker_not_the_credential(echoing):
    result = Gateway().call("echoing__get-env", {}, CONTEXT)
    assert result["status"] == "ok", result
    environ = json.loads(result["data"]["text"])
    assert environ["ECHO_TOKEN"] == MARKER  # the variable is named, its value replaced
    # The server did hold it: its own environment.
    [relay] = server_pids("echoing")
    [node] = children(relay)
    assert read_environ(node)["ECHO_TOKEN"] == CANARY
    assert not holds(CANARY, json.dumps(result))
    assert AuditRecord.objects.filter(tool="echoing__get-env", outcome="ok").count() == 1
    assert not holds(CANARY, json.dumps(list(AuditRecord.objects.values()), default=str))
    assert not any(holds(CANARY, row) for row in database_dump())
    # Its encodings, echoed back (sent by this test: the worker never has them), are replaced too.
    raw = CANARY.encode()
    encoded = {
        "base64": base64.b64encode(raw).decode(),
        "base64 inside longer data": base64.b64encode(b"user:" + raw + b"@host").decode(),
        "url-safe base64": base64.urlsafe_b64encode(b"k=" + raw).decode(),
        "url-encoded": urllib.parse.quote(CANARY, safe=""),
        "json-escaped": json.dumps(CANARY)[1:-1],
    }
    echoed = {
        how: Gateway().call("echoing__echo", {"message": f"x {text} y"}, CONTEXT) for how, text in encoded.items()
    }
    assert {how: MARKER in json.dumps(answer) for how, answer in echoed.items()} == dict.fromkeys(encoded, True)
    results = json.dumps(list(echoed.values()))
    assert [how for how, text in encoded.items() if text in results] == []


def test_the_relay_and_its_server_stop_with_the_supervisor_and_die_together(echoing):
    assert Gateway().call("echoing__echo", {"message": "up"}, CONTEXT)["status"] == "ok"
    [relay] = server_pids("echoing")
    [node] = children(relay)
    get_supervisor().restart("echoing")  # what an admin's change does: both stop, no orphan left
    wait_until(lambda: not alive(relay) and not alive(node), timeout=15, what="the relay and its server to stop")

    assert Gateway().call("echoing__echo", {"message": "again"}, CONTEXT)["status"] == "ok"
    [relay] = server_pids("echoing")
    [node] = children(relay)
    os.kill(relay, signal.SIGKILL)  # the relay killed outright: its server dies with it (PR_SET_PDEATHSIG)
    wait_until(lambda: not alive(node), timeout=15, what="the server to die with its relay")
    # The supervisor starts a new pair on the next call.
    wait_until(
        lambda: Gateway().call("echoing__echo", {"message": "back"}, CONTEXT)["status"] == "ok",
        timeout=30,
        what="a new relay",
    )


def test_over_http_the_bridges_answers_are_redacted_too(everything_http, admin_user):
    administration.discover(everything_http)
    accept_as_listed(Tool.objects.get(name="everything-http__echo"), admin_user, access="read")
    token = HTTP_CANARY.removeprefix("Bearer ")  # a server quoting the header's token, without its scheme
    result = Gateway().call("everything-http__echo", {"message": f"your key is {token}"}, CONTEXT)
    assert result["status"] == "ok", result
    assert MARKER in result["data"]["text"] and token not in json.dumps(result)
