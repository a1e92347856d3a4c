"""The intel adapter over TAXII 2.1 (toolserver/adapters/taxii.py) against a real TAXII server:
medallion, OASIS's reference implementation, started by each test on a loopback port with its
memory backend and two objects a page (tests/toolserver/taxii_server.py), indicators published
with stix2 as a feed's producer does. Last, the same through the real `intel` server process."""

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from tests.toolserver.taxii_server import API_ROOT, COLLECTION_ID, READER, READER_PASSWORD, indicator
from toolserver import egress, schemas
from toolserver.adapters.base import BackendError, ParamError
from toolserver.adapters.indicators import normalised
from toolserver.adapters.taxii import IndicatorIndex, Refresh, TaxiiIntel, pattern_keys
from toolserver.envelope import BackendFailure

pytestmark = pytest.mark.any_mode  # its tests that use no database run once, in the embedded run

SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"


@pytest.fixture
def allowed(taxii_server, monkeypatch):
    """This process may reach the TAXII server, as the intel server's process would."""
    monkeypatch.setenv(egress.VARIABLE, f"127.0.0.1:{taxii_server.port}")
    return taxii_server


def adapter(taxii, password: str = READER_PASSWORD) -> TaxiiIntel:
    return TaxiiIntel(url=taxii.url, credential=password, timeout_s=5, params=taxii.params())


def lookups(backend: TaxiiIntel, *wanted: tuple[str, str]) -> list[dict]:
    """Each lookup in turn on one adapter (one index), as one server process answers them."""

    async def run():
        try:
            return [
                await backend.lookup_indicator(schemas.LookupIndicator(kind=kind, value=value))
                for kind, value in wanted
            ]
        finally:
            await backend.aclose()

    return asyncio.run(run())


def verdicts(results: list[dict]) -> list[str]:
    return [result["verdict"] for result in results]


def test_a_domain_an_ip_and_a_hash_on_the_feed_answer_malicious_and_others_unknown(allowed):
    allowed.publish(
        indicator(
            "[domain-name:value = 'c2.evil.example']",
            name="Cobalt Strike C2",
            indicator_types=["malicious-activity"],
            labels=["cobalt-strike"],
            confidence=85,
        ),
        indicator("[ipv4-addr:value = '203.0.113.7'] OR [ipv6-addr:value = '2001:db8::7']", confidence=60),
        indicator(f"[file:hashes.'SHA-256' = '{SHA256.upper()}' OR file:hashes.MD5 = '{MD5}']", name="Dropper"),
        indicator("[ipv4-addr:value = '198.51.100.0/24']", name="Bulletproof hosting range"),
    )
    results = lookups(
        adapter(allowed),
        ("domain", "c2.evil.example"),
        ("ip", "203.0.113.7"),
        ("ip", "2001:db8::7"),
        ("hash", SHA256),
        ("hash", MD5),
        ("ip", "198.51.100.23"),
        ("domain", "evil.example"),
        ("ip", "203.0.113.8"),
        ("hash", "0" * 64),
        ("ip", "198.51.101.1"),
    )
    assert verdicts(results) == ["malicious"] * 6 + ["unknown"] * 4
    assert results[0] == {
        "kind": "domain",
        "value": "c2.evil.example",
        "verdict": "malicious",
        "confidence": 85,
        "tags": ["Cobalt Strike C2", "malicious-activity", "cobalt-strike"],
        "first_seen": results[0]["first_seen"],
        "source": f"taxii:{COLLECTION_ID}",
    }
    assert datetime.fromisoformat(results[0]["first_seen"]) <= datetime.now(UTC)
    assert (results[1]["confidence"], results[3]["tags"]) == (60, ["Dropper", "confidence not stated"])
    assert results[6] == {
        "kind": "domain",
        "value": "evil.example",
        "verdict": "unknown",
        "confidence": 0,
        "tags": [],
        "first_seen": None,
        "source": f"taxii:{COLLECTION_ID}",
    }


def test_an_indicator_added_after_the_first_lookup_is_found_by_the_next_which_fetches_only_it(allowed):
    allowed.publish(*(indicator(f"[domain-name:value = 'known{n}.example']") for n in range(3)))
    backend = adapter(allowed)

    async def run():
        try:
            ask = schemas.LookupIndicator(kind="domain", value="later.example")
            first = await backend.lookup_indicator(ask)
            spent_first = backend.index.last_refresh
            allowed.publish(indicator("[domain-name:value = 'later.example']", confidence=90))
            second = await backend.lookup_indicator(ask)
            return first, spent_first, second, backend.index.last_refresh
        finally:
            await backend.aclose()

    first, spent_first, second, spent_second = asyncio.run(run())
    assert (first["verdict"], second["verdict"], second["confidence"]) == ("unknown", "malicious", 90)
    assert spent_first == Refresh(requests=2, objects=3)  # the whole collection, two to a page
    assert spent_second == Refresh(requests=1, objects=1)  # added_after: only what was added since
    assert len(backend.index) == 4


def test_revoked_expired_and_not_yet_valid_indicators_do_not_count_and_types_grade_the_verdict(allowed):
    now = datetime.now(UTC)
    revoked = indicator("[domain-name:value = 'revoked.example']", confidence=80)
    allowed.publish(
        revoked,
        indicator(
            "[domain-name:value = 'expired.example']",
            valid_from=now - timedelta(days=30),
            valid_until=now - timedelta(days=1),
        ),
        indicator("[domain-name:value = 'future.example']", valid_from=now + timedelta(days=1)),
        indicator("[domain-name:value = 'cdn.example']", indicator_types=["benign"]),
        indicator("[ipv4-addr:value = '192.0.2.9']", indicator_types=["anonymization"], name="Tor exit"),
    )
    backend = adapter(allowed)

    async def run():
        try:
            ask = schemas.LookupIndicator(kind="domain", value="revoked.example")
            before = await backend.lookup_indicator(ask)
            allowed.publish(revoked.new_version(revoked=True, modified=revoked.modified + timedelta(seconds=1)))
            return before, await backend.lookup_indicator(ask)
        finally:
            await backend.aclose()

    before, after = asyncio.run(run())
    assert (before["verdict"], after["verdict"]) == ("malicious", "unknown")
    results = lookups(
        adapter(allowed),
        ("domain", "expired.example"),
        ("domain", "future.example"),
        ("domain", "cdn.example"),
        ("ip", "192.0.2.9"),
    )
    assert verdicts(results) == ["unknown", "unknown", "benign", "suspicious"]


@pytest.mark.parametrize(
    "pattern, keys",
    [
        ("[domain-name:value = 'Evil.Example.']", {("domain", "evil.example")}),
        (
            "[domain-name:value = 'a.example' OR domain-name:value = 'b.example']",
            {("domain", "a.example"), ("domain", "b.example")},
        ),
        ("[ipv6-addr:value = '2001:DB8:0:0::1']", {("ip", "2001:db8::1")}),
        ("[ipv4-addr:value = '10.1.2.3/32']", {("ip", "10.1.2.3")}),
        ("[ipv6-addr:value = '::ffff:10.1.2.3']", {("ip", "10.1.2.3")}),  # IPv4-mapped: the IPv4 address
        (
            "[file:hashes.'SHA-1' = 'DA39A3EE5E6B4B0D3255BFEF95601890AFD80709']",
            {("hash", "da39a3ee5e6b4b0d3255bfef95601890afd80709")},
        ),
        # More than the value is needed, or the comparison is not equality: not indexed.
        ("[domain-name:value = 'a.example' AND domain-name:value = 'b.example']", set()),
        ("[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e' AND file:name = 'x.exe']", set()),
        ("[domain-name:value = 'a.example'] AND [ipv4-addr:value = '10.0.0.1']", set()),
        ("[domain-name:value = 'a.example'] FOLLOWEDBY [ipv4-addr:value = '10.0.0.1']", set()),
        ("[domain-name:value = 'a.example'] REPEATS 5 TIMES", set()),
        ("[domain-name:value = 'a.example'] WITHIN 300 SECONDS", set()),
        ("[domain-name:value != 'a.example']", set()),
        ("[domain-name:value LIKE '%.example']", set()),
        ("[url:value = 'http://a.example/x']", set()),
        ("[domain-name:value = 'not a domain']", set()),
        ("[domain-name:value = 'a.example' OR url:value = 'http://b.example/']", {("domain", "a.example")}),
    ],
)
def test_a_pattern_is_indexed_only_under_values_it_alone_is_enough_to_match(pattern, keys):
    assert set(pattern_keys(pattern)[0]) == keys


@pytest.mark.parametrize("value", ["203.0.113.7", "::ffff:203.0.113.7", "::FFFF:CB00:7107", "::ffff:198.51.100.9"])
def test_an_ipv4_mapped_ipv6_address_matches_as_its_ipv4_address(value):
    index = IndicatorIndex()
    pattern = "[ipv4-addr:value = '203.0.113.7'] OR [ipv4-addr:value = '198.51.100.0/24']"
    index.add([json.loads(indicator(pattern).serialize())])
    assert len(index.matches("ip", normalised("ip", value), datetime.now(UTC))) == 1


def test_a_wrong_password_is_forbidden(allowed):
    with pytest.raises(BackendError) as refused:
        lookups(adapter(allowed, password="not-the-password"), ("domain", "evil.example"))
    assert (refused.value.failure, refused.value.status) == (BackendFailure.FORBIDDEN, 401)
    assert "not-the-password" not in str(refused.value) and "not-the-password" not in repr(refused.value)


def test_a_stopped_server_is_unavailable_even_with_an_index(allowed):
    allowed.publish(indicator("[domain-name:value = 'evil.example']"))
    backend = adapter(allowed)

    async def run():
        ask = schemas.LookupIndicator(kind="domain", value="evil.example")
        try:
            first = await backend.lookup_indicator(ask)
            allowed.stop()
            with pytest.raises(BackendError) as failed:
                await backend.lookup_indicator(ask)
            return first, failed.value
        finally:
            await backend.aclose()

    first, failure = asyncio.run(run())
    assert first["verdict"] == "malicious"
    assert failure.failure == BackendFailure.UNAVAILABLE


def test_a_refresh_stopped_at_its_page_bound_fails_the_lookup_and_the_next_goes_on(allowed, monkeypatch):
    monkeypatch.setattr("toolserver.adapters.taxii.MAX_PAGES_PER_REFRESH", 2)
    allowed.publish(*(indicator(f"[domain-name:value = 'n{number}.example']") for number in range(4)))
    allowed.publish(indicator("[domain-name:value = 'evil.example']"))  # on the third page, two a page
    backend = adapter(allowed)

    async def run():
        ask = schemas.LookupIndicator(kind="domain", value="evil.example")
        try:
            with pytest.raises(BackendError) as failed:
                await backend.lookup_indicator(ask)
            return failed.value, await backend.lookup_indicator(ask)
        finally:
            await backend.aclose()

    failure, found = asyncio.run(run())
    assert failure.failure == BackendFailure.UNAVAILABLE  # never "unknown" from a part of the feed
    assert found["verdict"] == "malicious" and len(backend.index) == 5


def test_a_host_off_the_allow_list_is_refused_before_any_request(taxii_server, monkeypatch):
    monkeypatch.setenv(egress.VARIABLE, f"127.0.0.1:{taxii_server.port + 1 if taxii_server.port < 65535 else 1}")
    with pytest.raises(egress.EgressRefused):
        lookups(adapter(taxii_server), ("domain", "evil.example"))
    assert f"/{API_ROOT}/" not in taxii_server.log_path.read_text()  # nothing reached it


def test_the_parameters_are_checked_naming_the_field_never_the_value():
    good = {"api_root": API_ROOT, "collection_id": COLLECTION_ID, "username": READER}
    for wrong, named in [
        ({"collection_id": "../../admin"}, "Collection ID"),
        ({"collection_id": ""}, "Collection ID is required"),
        ({"api_root": "feeds/../admin"}, "API root"),
        ({"username": "soc:reader"}, "Username"),
    ]:
        with pytest.raises(ParamError) as refused:
            TaxiiIntel(url="http://taxii.example", credential="x", timeout_s=1, params=good | wrong)
        assert named in str(refused.value)
        assert all(value not in str(refused.value) for value in wrong.values() if value)


# -- through the real intel server process -------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_through_the_intel_server_process_a_lookup_is_the_envelope_with_the_verdict_and_one_audit_record(
    taxii_server, admin_user, settings, caplog, capfd
):
    from console.manage import administration
    from investigations.models import AuditRecord
    from tests.test_canary import database_dump
    from toolserver.gateway import CallContext, Gateway
    from toolserver.models import ToolServer
    from toolserver.supervisor import check_connection

    caplog.set_level(logging.DEBUG)
    taxii_server.publish(indicator("[domain-name:value = 'c2.evil.example']", name="C2", confidence=75))
    settings.BACKEND_ALLOWED_HOSTS = [f"127.0.0.1:{taxii_server.port}"]
    intel = ToolServer.objects.get(name="intel")
    administration.update_server(
        intel, admin_user, {"adapter": "taxii", "url": taxii_server.url, "params": taxii_server.params()}
    )
    administration.set_credential(ToolServer.objects.get(name="intel"), admin_user, secret=READER_PASSWORD)

    assert check_connection("intel") == {
        "ok": True,
        "detail": f"reached 127.0.0.1:{taxii_server.port}; TAXII 2.1 API root 'Test feeds', collection 'Indicators' readable",
    }
    context = CallContext(correlation_id="inv-taxii-1", trigger="alert-taxii-1")
    result = Gateway().call("lookup_indicator", {"kind": "domain", "value": "c2.evil.example"}, context)
    assert result == {
        "status": "ok",
        "data": {
            "kind": "domain",
            "value": "c2.evil.example",
            "verdict": "malicious",
            "confidence": 75,
            "tags": ["C2"],
            "first_seen": result["data"]["first_seen"],
            "source": f"taxii:{COLLECTION_ID}",
        },
        "truncated": False,
        "source": "taxii:intel",
    }
    (record,) = AuditRecord.objects.filter(correlation_id="inv-taxii-1")
    assert (record.tool, record.outcome, record.backend_status) == ("lookup_indicator", "ok", "200")

    # The feed's password (the canary of tests/test_canary.py, for this credential): only in its server's process.
    captured = capfd.readouterr()
    places = [
        json.dumps(result),
        json.dumps(list(AuditRecord.objects.values()), default=str),
        caplog.text,
        captured.out,
        captured.err,
        *database_dump(),
    ]
    assert not [place for place in places if READER_PASSWORD in place]
