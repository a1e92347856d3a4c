"""The intel adapter over MISP (toolserver/adapters/misp.py): contract tests against a stand-in of
MISP's REST API serving the responses MISP's OpenAPI document gives (tests/toolserver/misp_server.py),
since MISP cannot run here. Last, the same through the real `intel` server process: its typed errors
name MISP (misp_forbidden, misp_timeout)."""

import asyncio

import pytest

from tests.toolserver.misp_server import API_KEY, attribute
from toolserver import egress, schemas
from toolserver.adapters.base import BackendError
from toolserver.adapters.misp import TYPES, MispIntel
from toolserver.envelope import BackendFailure

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run

SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.fixture
def allowed(misp_server, monkeypatch):
    """This process may reach the stand-in, as the intel server's process would."""
    monkeypatch.setenv(egress.VARIABLE, f"127.0.0.1:{misp_server.port}")
    return misp_server


def lookups(misp, *wanted: tuple[str, str], key: str = API_KEY) -> list[dict]:
    async def run():
        backend = MispIntel(url=misp.url, credential=key, timeout_s=5)
        try:
            return [
                await backend.lookup_indicator(schemas.LookupIndicator(kind=kind, value=value))
                for kind, value in wanted
            ]
        finally:
            await backend.aclose()

    return asyncio.run(run())


def test_contract_a_lookup_is_one_documented_restsearch_with_the_bare_key_and_its_answer_the_indicator_shape(
    allowed,
):
    allowed.publish(
        attribute(
            "203.0.113.7",
            info="Cobalt Strike C2",
            threat_level_id="1",
            tags=["tlp:amber", 'misp:confidence-level="usually-confident"'],
            first_seen="2024-03-01T12:00:00.000000+02:00",
        )
    )
    (result,) = lookups(allowed, ("ip", "203.0.113.7"))
    assert result == {
        "kind": "ip",
        "value": "203.0.113.7",
        "verdict": "malicious",
        "confidence": 75,
        "tags": ["Cobalt Strike C2", "tlp:amber", 'misp:confidence-level="usually-confident"'],
        "first_seen": "2024-03-01T10:00:00Z",
        "source": "misp",
    }
    (sent,) = allowed.requests
    assert (sent.method, sent.path) == ("POST", "/attributes/restSearch")
    assert sent.authorization == API_KEY  # MISP's scheme: the key itself, no "Bearer"
    assert sent.header("Accept") == "application/json"
    assert sent.json() == {
        "value": "203.0.113.7",
        "type": TYPES["ip"],
        "returnFormat": "json",
        "limit": 50,
        "includeEventTags": True,
    }


def test_contract_verdicts_from_to_ids_the_threat_level_and_a_false_positive_tag_and_unknown_when_none_match(
    allowed,
):
    allowed.publish(
        attribute("c2.evil.example", "domain", threat_level_id="2"),  # flagged for IDS: malicious
        attribute("context.example", "hostname", to_ids=False),  # known, not for detection: suspicious
        attribute("low.example", "domain", threat_level_id="3"),  # in a low-threat event: suspicious
        attribute("cdn.example", "domain", tags=['false-positive:risk="high"']),
        attribute("gone.example", "domain", deleted=True),  # deleted: not counted
        attribute(f"dropper.exe|{SHA256}", "filename|sha256", first_seen="1581984000000000"),  # either half
        attribute("198.51.100.9", "ip-src", to_ids=False),
        attribute("198.51.100.9", "ip-dst", threat_level_id="1"),  # the gravest of two
        attribute("odd.example", "domain", first_seen="9" * 20),  # a first_seen past any date: not used
    )
    results = lookups(
        allowed,
        ("domain", "c2.evil.example"),
        ("domain", "context.example"),
        ("domain", "low.example"),
        ("domain", "cdn.example"),
        ("domain", "gone.example"),
        ("hash", SHA256),
        ("ip", "198.51.100.9"),
        ("domain", "evil.example"),
        ("domain", "odd.example"),
    )
    assert [result["verdict"] for result in results] == [
        "malicious",
        "suspicious",
        "suspicious",
        "suspicious",
        "unknown",
        "malicious",
        "malicious",
        "unknown",
        "malicious",
    ]
    assert results[8]["first_seen"] == "2021-04-08T09:52:48Z"  # when the attribute last changed, instead
    assert results[0]["confidence"] == 0 and "confidence not stated" in results[0]["tags"]
    assert results[5]["first_seen"] == "2020-02-18T00:00:00Z"  # the document's microseconds example
    assert results[4] == results[4] | {"tags": [], "first_seen": None, "confidence": 0}


def test_contract_an_attribute_misp_returns_is_counted_only_when_a_half_of_it_equals_the_lookup(allowed):
    """MISP's value search has wildcards and substring forms; this adapter matches by equality only."""
    allowed.publish(
        attribute("evil.example.net", "domain", info="A longer name"),
        attribute("evil.example", "domain", info="Deleted", deleted=True),
        attribute("evil.example", "domain", info="The one", to_ids=False),
    )
    allowed._search = lambda query: allowed.attributes  # an instance that answers more than was asked
    (result,) = lookups(allowed, ("domain", "evil.example"))
    assert (result["verdict"], result["tags"]) == ("suspicious", ["The one", "confidence not stated"])
    (other,) = lookups(allowed, ("domain", "example.net"))
    assert other["verdict"] == "unknown"


def test_contract_health_is_getversion_with_the_key(allowed):
    async def run(key):
        backend = MispIntel(url=allowed.url, credential=key, timeout_s=5)
        try:
            return await backend.health()
        finally:
            await backend.aclose()

    assert asyncio.run(run(API_KEY)) == "MISP 2.4.142, API key accepted"
    assert allowed.requests[-1].path == "/servers/getVersion"
    with pytest.raises(BackendError) as refused:
        asyncio.run(run("not-the-key"))
    assert (refused.value.failure, refused.value.status) == (BackendFailure.FORBIDDEN, 403)


def test_contract_a_wrong_key_is_forbidden_and_never_repeated(allowed):
    with pytest.raises(BackendError) as refused:
        lookups(allowed, ("ip", "203.0.113.7"), key="not-the-misp-key")
    assert (refused.value.failure, refused.value.status) == (BackendFailure.FORBIDDEN, 403)
    assert len(allowed.requests) == 1


def test_contract_an_answer_not_of_misps_shape_is_malformed(allowed):
    allowed._search = lambda query: [{"value": 7}]  # not an attribute
    allowed.publish(attribute("203.0.113.7"))
    with pytest.raises(BackendError) as malformed:
        lookups(allowed, ("ip", "203.0.113.7"))
    assert malformed.value.failure == BackendFailure.MALFORMED


# -- through the real intel server process -------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_contract_through_the_intel_server_process_misp_forbidden_and_misp_timeout_are_its_typed_errors(
    misp_server, admin_user, settings
):
    """That the key reaches nothing but that process is tests/test_canary.py's MISP test."""
    from console.manage import administration
    from investigations.models import AuditRecord
    from toolserver.gateway import CallContext, Gateway
    from toolserver.models import ToolServer
    from toolserver.supervisor import check_connection

    misp_server.publish(attribute("c2.evil.example", "domain", info="C2", threat_level_id="1"))
    settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{misp_server.port}"]
    settings.BACKEND_TIMEOUT_S = 2
    intel = ToolServer.objects.get(name="intel")
    administration.update_server(intel, admin_user, {"adapter": "misp", "url": misp_server.url, "params": {}})
    administration.set_credential(ToolServer.objects.get(name="intel"), admin_user, secret=API_KEY)
    assert check_connection("intel") == {
        "ok": True,
        "detail": f"reached 127.0.0.1:{misp_server.port}; MISP 2.4.142, API key accepted",
    }
    gateway, context = Gateway(), CallContext(correlation_id="inv-misp-1", trigger="alert-misp-1")
    ask = {"kind": "domain", "value": "c2.evil.example"}
    results = [gateway.call("lookup_indicator", ask, context)]
    assert results[0]["status"] == "ok" and results[0]["data"]["verdict"] == "malicious"
    assert results[0]["source"] == "misp:intel"

    misp_server.key = "a-rotated-key-the-server-does-not-have"  # the key was revoked in MISP
    results.append(gateway.call("lookup_indicator", ask, context))
    misp_server.hold()  # MISP does not answer (until the stand-in closes)
    results.append(gateway.call("lookup_indicator", ask, context))
    assert [(result["status"], result.get("reason")) for result in results] == [
        ("ok", None),
        ("error", "misp_forbidden"),
        ("error", "misp_timeout"),
    ]
    assert [result["retryable"] for result in results[1:]] == [False, True]
    records = AuditRecord.objects.filter(correlation_id="inv-misp-1").order_by("pk")
    assert [(record.outcome, record.reason) for record in records] == [
        ("ok", ""),
        ("error", "misp_forbidden"),
        ("error", "misp_timeout"),
    ]
