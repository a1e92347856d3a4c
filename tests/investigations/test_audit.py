"""The audit trail: an append-only hash chain, its verification, and who reads and exports what."""

import base64
import csv
import io
import json
import threading
from contextlib import contextmanager
from datetime import timedelta
from itertools import pairwise

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, connections
from django.utils import timezone

from core.roles import ANALYST
from investigations.audit import chain as audit
from investigations.models import AuditHead, AuditRecord, AuditRefused
from tests.conftest import PASSWORD
from tests.support import WAIT_S
from toolserver.audit import keyed_hash

pytestmark = pytest.mark.django_db


def add(count: int = 1, **fields) -> list[AuditRecord]:
    base = {"kind": "tool_call", "server": "siem", "tool": "search_logins", "outcome": "ok", "actor": "agent"}
    return [audit.append(**(base | fields)) for _ in range(count)]


def verify() -> tuple[int, str, str]:
    """manage.py verify_audit: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=err)
        status = 0
    except SystemExit as exit:
        status = exit.code
    return status, out.getvalue(), err.getvalue()


@contextmanager
def tampering():
    """Lift the database's refusal, as someone with the table owner's rights could (the test's transaction undoes it)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE investigations_auditrecord DISABLE TRIGGER USER")
            cursor.execute("ALTER TABLE investigations_audithead DISABLE TRIGGER USER")
        else:
            cursor.execute("DROP TRIGGER audit_append_only")
            cursor.execute("DROP TRIGGER IF EXISTS audit_head_forward_only")
        yield cursor


INSERT_RECORD = (
    "INSERT INTO investigations_auditrecord (seq, prev_hash, hash, created_at, kind, server, tool, tool_use_id,"
    " arguments, outcome, reason, idempotency_key, backend_status, latency_ms, correlation_id, actor, source,"
    " extra, text) VALUES (%s, %s, %s, %s, 'tool_call', '', 'isolate_host', '', '{}', 'ok', '', '', '', 0,"
    " '', 'agent', '', '{}', '')"
)


def seq_of(record_id: int) -> int:
    return AuditRecord.objects.filter(pk=record_id).values_list("seq", flat=True).get()


# -- the chain ---------------------------------------------------------------------------------------
def test_records_form_one_chain_that_verifies():
    records = add(5)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == audit.GENESIS
    assert all(later.prev_hash == earlier.hash for earlier, later in pairwise(records))
    assert AuditHead.objects.values_list("seq", "hash").get() == (5, records[-1].hash)
    assert verify()[:2] == (0, "Audit chain intact: 5 records.\n")


def test_numbers_the_database_stores_otherwise_than_python_holds_them_still_verify():
    """jsonb keeps a number, not its spelling: 1e+20 comes back 100000000000000000000 (an integer), -0.0 as 0.0.
    A model's malformed arguments are recorded as sent: hashed as Python held them, such a record broke the chain
    for good, and every tampering after it went unreported."""
    sent = {"host": "web-1", "lookback_hours": 1e20, "offset": -0.0, "ratio": 0.1, "tiny": 1.5e-07, "n": [2.5e16]}
    (record,) = add(arguments=sent, extra={"as_sent": sent})
    add()  # and the chain goes on from it
    assert verify()[:2] == (0, "Audit chain intact: 2 records.\n")
    stored = AuditRecord.objects.get(pk=record.pk)
    assert stored.arguments == record.arguments and stored.hash == record.hash


def test_the_orm_refuses_to_change_or_remove_a_record():
    (record,) = add()
    record.outcome = "error"
    for attempt in (
        record.save,
        record.delete,
        lambda: AuditRecord.objects.filter(pk=record.pk).update(outcome="error"),
        lambda: AuditRecord.objects.all().delete(),
        lambda: AuditRecord.objects.bulk_update([record], ["outcome"]),
        lambda: AuditRecord.objects.bulk_create([AuditRecord(seq=2, hash="f" * 64, prev_hash=record.hash)]),
    ):
        with pytest.raises(AuditRefused):
            attempt()
    assert AuditRecord.objects.get().outcome == "ok"


def test_the_database_refuses_an_update_by_sql():
    (record,) = add()
    with pytest.raises(DatabaseError, match="append-only"), connection.cursor() as cursor:
        cursor.execute("UPDATE investigations_auditrecord SET outcome = 'error' WHERE id = %s", [record.pk])


@pytest.mark.production
def test_postgresql_refuses_a_delete_by_sql():
    (record,) = add()
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), connection.cursor() as cursor:
        cursor.execute("DELETE FROM investigations_auditrecord WHERE id = %s", [record.pk])


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_make_one_unbroken_chain():
    writers, each = 8, 25
    start = threading.Barrier(writers)

    def write(n: int):
        try:
            start.wait(timeout=WAIT_S)
            for _ in range(each):
                audit.append(kind="tool_call", tool="get_host", outcome="ok", actor=f"worker-{n}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_S)
    assert not any(thread.is_alive() for thread in threads)
    assert list(AuditRecord.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, writers * each + 1))
    assert verify()[0] == 0


# -- tampering, named ------------------------------------------------------------------------------------
def test_an_edited_record_is_named():
    records = add(6)
    with tampering() as cursor:
        cursor.execute("UPDATE investigations_auditrecord SET outcome = 'error' WHERE id = %s", [records[3].pk])
    status, _, err = verify()
    assert status == 1
    assert f"edited: record #4 (id {records[3].pk}) no longer matches its hash" in err


def test_an_edited_and_rehashed_record_is_named():
    records = add(6)
    forged = records[2]
    forged.outcome = "error"
    forged_hash = audit.link_hash(forged.prev_hash, audit.content(forged))
    with tampering() as cursor:
        cursor.execute(
            "UPDATE investigations_auditrecord SET outcome = 'error', hash = %s WHERE id = %s", [forged_hash, forged.pk]
        )
    status, _, err = verify()
    assert status == 1
    assert f"edited: record #3 (id {forged.pk}) was changed and re-hashed" in err


def test_a_deleted_record_is_named():
    records = add(6)
    with tampering() as cursor:
        cursor.execute("DELETE FROM investigations_auditrecord WHERE id = %s", [records[2].pk])
    status, _, err = verify()
    assert status == 1
    assert f"deleted: record #3 is missing before record #4 (id {records[3].pk})" in err


def test_records_deleted_from_the_end_are_found_by_the_head():
    add(6)
    with tampering() as cursor:
        cursor.execute("DELETE FROM investigations_auditrecord WHERE seq >= 5")
    status, _, err = verify()
    assert status == 1
    assert "deleted: records #5–#6 are missing from the end of the chain" in err


def test_two_swapped_records_are_named():
    records = add(6)
    with tampering() as cursor:
        cursor.execute("UPDATE investigations_auditrecord SET seq = -seq WHERE seq IN (3, 4)")
        cursor.execute("UPDATE investigations_auditrecord SET seq = CASE seq WHEN -3 THEN 4 ELSE 3 END WHERE seq < 0")
    assert seq_of(records[3].pk) == 3
    status, _, err = verify()
    assert status == 1
    assert f"reordered: record #3 (id {records[3].pk}) links to #4, which comes after it" in err


def test_an_inserted_record_is_named():
    records = add(6)
    forged = AuditRecord(
        seq=4,
        prev_hash=records[2].hash,
        created_at=records[2].created_at,
        kind="tool_call",
        tool="isolate_host",
        outcome="ok",
        actor="agent",
        arguments={},
        extra={},
    )
    forged.hash = audit.link_hash(forged.prev_hash, audit.content(forged))  # the attacker knows the scheme
    with tampering() as cursor:
        cursor.execute("UPDATE investigations_auditrecord SET seq = -seq - 1 WHERE seq >= 4")
        cursor.execute("UPDATE investigations_auditrecord SET seq = -seq WHERE seq < 0")
        cursor.execute(INSERT_RECORD, [4, forged.prev_hash, forged.hash, forged.created_at])
    forged_id = AuditRecord.objects.get(seq=4).pk
    status, _, err = verify()
    assert status == 1
    assert f"inserted: record #4 (id {forged_id}) is not part of the chain: #5 links past it" in err


def test_a_record_appended_while_the_chain_is_verified_is_not_tampering(monkeypatch):
    """Another process appends between the head's read and the walk: not "beyond the chain's head"."""
    add(3)
    read_head = audit._head

    def head_then_an_append():
        head = read_head()
        add()  # committed by another process as the walk begins
        return head

    monkeypatch.setattr(audit, "_head", head_then_an_append)
    assert audit.verify_database() == (3, None)
    monkeypatch.setattr(audit, "_head", read_head)
    assert audit.verify_database() == (4, None)


# -- the head: only the chain's writer moves it ------------------------------------------------------------
def forge_append(cursor, after: AuditRecord) -> AuditRecord:
    """What a role with INSERT on the trail can do: append a record that links, as the scheme says."""
    forged = AuditRecord(
        seq=after.seq + 1,
        prev_hash=after.hash,
        created_at=after.created_at,
        kind="tool_call",
        tool="isolate_host",
        outcome="ok",
        actor="agent",
        arguments={},
        extra={},
    )
    forged.hash = audit.link_hash(forged.prev_hash, audit.content(forged))
    cursor.execute(INSERT_RECORD, [forged.seq, forged.prev_hash, forged.hash, forged.created_at])
    return forged


def test_a_forged_append_that_leaves_the_head_is_beyond_the_chains_head():
    records = add(3)
    with connection.cursor() as cursor:  # only rights a runtime role has
        forge_append(cursor, records[-1])
    status, _, err = verify()
    assert status == 1
    assert "inserted: records after #3 are beyond the chain's head" in err


def test_a_forged_append_with_a_moved_head_is_refused():
    records = add(3)
    with connection.cursor() as cursor:  # no guard lifted: only rights a runtime role has
        forged = forge_append(cursor, records[-1])
        cursor.execute("UPDATE investigations_audithead SET seq = %s, hash = %s", [forged.seq, forged.hash])
    status, _, err = verify()
    assert status == 1
    assert "the chain head #4 was not moved by the chain's writer" in err
    with pytest.raises(AuditRefused, match="not moved by the chain's writer"):
        add()  # the console does not build on it
    with pytest.raises(AuditRefused, match="not moved by the chain's writer"):
        audit.signed_digest()  # nor vouch for it


@pytest.mark.parametrize("seq, which", [(2, "back"), (3, "to a hash no record has")])
def test_the_database_moves_the_head_only_forward_to_a_record(seq, which):
    records = add(3)
    target = records[1].hash if which == "back" else "f" * 64
    with pytest.raises(DatabaseError, match="audit head"), connection.cursor() as cursor:
        cursor.execute("UPDATE investigations_audithead SET seq = %s, hash = %s", [seq, target])


def test_verify_checks_every_digest_given(tmp_path):
    add(3)
    earlier = audit.signed_digest()
    with tampering() as cursor:  # the table's owner rewrites history from the start; the console builds on it
        cursor.execute("DELETE FROM investigations_auditrecord")
        cursor.execute("DELETE FROM investigations_audithead")
    add(3, outcome="error")
    later = audit.signed_digest()
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    (tmp_path / "later.json").write_text(json.dumps(later))
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit:
        call_command(
            "verify_audit",
            "--digest",
            str(tmp_path / "earlier.json"),
            "--digest",
            str(tmp_path / "later.json"),
            public_key=audit.public_key(),
            stdout=io.StringIO(),
            stderr=err,
        )
    assert exit.value.code == 1
    assert f"record #3 is not the one the signed digest of #3 ({earlier['signed_at']}) names" in err.getvalue()


# -- the signed digest and offline verification -------------------------------------------------------------
def test_an_export_verifies_offline_against_the_signed_digest(tmp_path, client, make_user):
    from tests.conftest import MANAGER

    add(4, tool="get_host")
    make_user("max", MANAGER)
    client.login(username="max", password=PASSWORD)
    digest = client.get("/api/audit/digest").json()  # first: the export then reaches the head it signs
    export = b"".join(client.get("/api/audit/export", {"format": "jsonl"}).streaming_content)
    assert digest["seq"] == 6 and audit.check_digest(digest, audit.public_key())
    (tmp_path / "audit.jsonl").write_bytes(export)
    (tmp_path / "digest.json").write_text(json.dumps(digest))
    out = io.StringIO()
    call_command(
        "verify_audit",
        export=str(tmp_path / "audit.jsonl"),
        digest=[str(tmp_path / "digest.json")],
        public_key=audit.public_key(),
        stdout=out,
    )
    # The 4 calls, the sign-in and the digest's own access record; the export stops before its own.
    assert out.getvalue().splitlines() == [
        "The signed digest of #6 (" + digest["signed_at"] + ") matches.",
        "Audit chain intact: 6 records.",
    ]

    lines = export.decode().splitlines()
    edited = json.loads(lines[1])
    edited["outcome"] = "error"
    lines[1] = json.dumps(edited)
    (tmp_path / "edited.jsonl").write_text("\n".join(lines) + "\n")
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit:
        call_command("verify_audit", export=str(tmp_path / "edited.jsonl"), stdout=io.StringIO(), stderr=err)
    assert exit.value.code == 1 and "record #2 no longer matches its hash" in err.getvalue()

    forged = digest | {"hash": "0" * 64}
    assert not audit.check_digest(forged, audit.public_key())


def test_an_export_forged_end_to_end_and_signed_with_another_key_is_never_intact(tmp_path):
    """Without --public-key the signature is checked against the key the file names: the forger's own."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from investigations.audit import merkle
    from toolserver.audit import canonical_json

    rows, prev = [], audit.GENESIS
    for seq in (1, 2):
        row = dict.fromkeys(audit.CONTENT_FIELDS, "") | {
            "seq": seq,
            "created_at": "2026-01-01T00:00:00+00:00",
            "kind": "decision",
            "tool": "isolate_host",
            "arguments": {},
            "extra": {},
            "latency_ms": 0.0,
            "outcome": "rejected",
            "actor": "user:someone-else",
        }
        row |= {"investigation": None, "prev_hash": prev}
        row["hash"] = prev = audit.link_hash(prev, audit.content(row))
        rows.append(row)
    key = Ed25519PrivateKey.generate()  # not the console's
    body = {
        "chain": audit.CHAIN,
        "seq": 2,
        "hash": prev,
        "root": merkle.Tree([row["hash"] for row in rows], 2).root,
        "signed_at": "2026-01-01T00:00:01+00:00",
        "export": "complete",
    }
    public = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    head = body | {"public_key": public, "signature": base64.b64encode(key.sign(canonical_json(body))).decode()}
    path = tmp_path / "forged.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + json.dumps({"signed_head": head}) + "\n")

    def check(**pinned) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with pytest.raises(SystemExit) as exit:
            call_command("verify_audit", export=str(path), stdout=out, stderr=err, **pinned)
        return exit.value.code, out.getvalue(), err.getvalue()

    status, out, err = check()
    assert status == 3 and "intact" not in out
    assert err.startswith("UNPINNED: the export's 2 records match the signed head it carries")
    status, out, err = check(public_key=audit.public_key())
    assert status == 1 and "the export's signed head was not signed by that key" in err


@pytest.fixture
def exported(tmp_path, manager, client):
    """Six calls (three get_host), a digest, then an export: (its lines, verify_audit on changed lines)."""
    add(3, tool="get_host")
    add(3, tool="get_user")
    client.login(username="max", password=PASSWORD)
    (tmp_path / "digest.json").write_text(json.dumps(client.get("/api/audit/digest").json()))  # signs #8

    def export(**filters) -> list[str]:
        body = b"".join(client.get("/api/audit/export", {"format": "jsonl", **filters}).streaming_content)
        return body.decode().splitlines()

    def check(lines: list[str]) -> tuple[int, str]:
        (tmp_path / "export.jsonl").write_text("".join(line + "\n" for line in lines))
        out, err = io.StringIO(), io.StringIO()
        try:
            call_command(
                "verify_audit",
                "--export",
                str(tmp_path / "export.jsonl"),
                "--digest",
                str(tmp_path / "digest.json"),
                public_key=audit.public_key(),
                stdout=out,
                stderr=err,
            )
            status = 0
        except SystemExit as exit:
            status = exit.code
        return status, out.getvalue() + err.getvalue()

    return export, check


def test_an_export_with_a_line_removed_from_the_middle_fails_naming_it(exported):
    export, check = exported
    lines = export()
    assert check(lines)[0] == 0
    del lines[3]  # record #4
    status, output = check(lines)
    assert status == 1 and "record #4 is missing before record #5" in output


def test_an_export_with_an_edited_rehashed_line_and_its_successor_removed_fails(exported):
    export, check = exported
    lines = export()
    forged = json.loads(lines[2])  # record #3
    forged["outcome"] = "error"
    forged["hash"] = audit.link_hash(forged["prev_hash"], audit.content(forged))
    lines[2] = json.dumps(forged)
    del lines[3]  # #4, which would no longer link to it
    status, output = check(lines)
    assert status == 1 and "record #4 is missing before record #5" in output


def test_an_export_cut_before_the_digests_head_fails(exported):
    export, check = exported
    lines = export()
    status, output = check(lines[:5])
    assert status == 1 and "the export has no signed head after record #5: it was cut" in output
    status, output = check(lines[:5] + lines[-1:])  # its signed head kept
    assert status == 1 and "the export ends at record #5, before the signed head #8" in output


def test_a_filtered_export_proves_each_records_membership(exported):
    export, check = exported
    lines = export(tool="get_host")
    status, output = check(lines)
    assert status == 0, output
    assert "3 records of a filtered export, each proven a member of the chain signed at #8" in output
    status, output = check(lines[:1] + lines[2:])  # #2 removed
    assert status == 1 and "record #2 is missing from the filtered export" in output
    other = export(tool="get_user")[0]  # a genuine record, but not one this export holds
    status, output = check([*lines[:2], other, lines[-1]])  # #3 swapped for it
    assert status == 1 and "record #4 is not one the export's signed head lists" in output


# -- reading: filters, search, pages, export ---------------------------------------------------------------
@pytest.fixture
def trail(make_investigation):
    """Two investigations' calls of every outcome, and a decision by a person."""
    first, second = make_investigation("AUD-1"), make_investigation("AUD-2")
    add(2, correlation_id=first.correlation_id, tool="get_host", server="edr")
    add(
        1,
        correlation_id=first.correlation_id,
        tool="get_user",
        server="identity",
        arguments={"username": keyed_hash("J.Doe")},
    )
    add(1, correlation_id=first.correlation_id, outcome="error", reason="siem_timeout")
    add(1, correlation_id=second.correlation_id, outcome="rate_limited", reason="rate_limited")
    add(
        1,
        correlation_id=second.correlation_id,
        kind="decision",
        server="edr-response",
        tool="isolate_host",
        outcome="approved",
        actor="user:ana",
        idempotency_key="k" * 64,
    )
    return first, second


@pytest.mark.parametrize(
    "filters, expected",
    [
        ({"tool": "get_host"}, [2, 1]),
        ({"server": "identity"}, [3]),
        ({"outcome": "error", "reason": "siem_timeout"}, [4]),
        ({"outcome": "rate_limited"}, [5]),
        ({"actor": "user:ana"}, [6]),
        ({"kind": "decision"}, [6]),
        ({"idempotency_key": "k" * 64}, [6]),
        ({"alert": "test:AUD-2"}, [6, 5]),
        ({"alert": "AUD-1", "tool": "get_user"}, [3]),
        ({"q": "J.Doe"}, [3]),  # a sensitive value, found by its keyed hash
        ({"q": "SIEM_TIMEOUT"}, [4]),
    ],
)
def test_each_filter_narrows_the_list(trail, manager, client, filters, expected):
    client.login(username="max", password=PASSWORD)
    response = client.get("/api/audit", filters)
    assert response.status_code == 200, response.content
    assert [item["seq"] for item in response.json()["items"]] == expected


def test_filters_by_investigation_and_time(trail, manager, client):
    first, _ = trail
    client.login(username="max", password=PASSWORD)
    seqs = [i["seq"] for i in client.get("/api/audit", {"investigation": first.pk}).json()["items"]]
    assert seqs == [4, 3, 2, 1]
    later = (timezone.now() + timedelta(minutes=1)).isoformat()
    assert client.get("/api/audit", {"since": later, "kind": "tool_call"}).json()["items"] == []


def test_a_bad_filter_is_a_clear_400(manager, client):
    client.login(username="max", password=PASSWORD)
    response = client.get("/api/audit", {"outcome": "exploded", "investigation": "x"})
    assert response.status_code == 400
    assert {error["field"] for error in response.json()["errors"]} == {"outcome", "investigation"}
    assert client.get("/audit/", {"since": "yesterday"}).status_code == 400


def test_keyset_pages_walk_the_whole_trail_once(manager, client):
    add(12)
    client.login(username="max", password=PASSWORD)
    seen, cursor = [], None
    while True:
        body = client.get(
            "/api/audit", {"limit": 5, "kind": "tool_call"} | ({"cursor": cursor} if cursor else {})
        ).json()
        seen += [item["seq"] for item in body["items"]]
        if not (cursor := body["next_cursor"]):
            break
    assert seen == list(range(12, 0, -1))


def test_the_export_of_a_filtered_view_matches_the_filtered_list(trail, manager, client):
    client.login(username="max", password=PASSWORD)
    filters = {"outcome": "ok", "kind": "tool_call"}
    listed = [item["seq"] for item in client.get("/api/audit", filters).json()["items"]]
    page = client.get("/audit/", filters).content.decode()
    jsonl = b"".join(client.get("/audit/export", filters | {"format": "jsonl"}).streaming_content).decode()
    rows = list(
        csv.DictReader(
            io.StringIO(
                b"".join(client.get("/api/audit/export", filters | {"format": "csv"}).streaming_content).decode()
            )
        )
    )
    assert listed == [3, 2, 1]
    assert [json.loads(line)["seq"] for line in jsonl.splitlines()[:-1]] == listed[::-1]  # chain order, then the head
    assert [int(row["seq"]) for row in rows] == listed[::-1]
    assert all(f'data-seq="{seq}"' in page for seq in listed) and 'data-seq="4"' not in page
    assert rows[2]["arguments"] == json.dumps({"username": keyed_hash("J.Doe")})


def test_csv_cells_that_look_like_formulas_are_neutralised(manager, client):
    add(1, source="=cmd|' /C calc'!A0", arguments={"reason": '=HYPERLINK("http://x")'})
    client.login(username="max", password=PASSWORD)
    rows = list(
        csv.DictReader(
            io.StringIO(
                b"".join(client.get("/audit/export", {"format": "csv", "kind": "tool_call"}).streaming_content).decode()
            )
        )
    )
    assert rows[0]["source"] == "'=cmd|' /C calc'!A0"  # shown as text, never run
    assert json.loads(rows[0]["arguments"]) == {"reason": '=HYPERLINK("http://x")'}  # inside JSON: inert as is
    assert rows[0]["outcome"] == "ok"


def test_reading_and_exporting_are_recorded(trail, manager, client):
    client.login(username="max", password=PASSWORD)
    client.get("/audit/", {"tool": "get_host"})
    b"".join(client.get("/api/audit/export", {"format": "jsonl", "outcome": "ok"}).streaming_content)
    reads = AuditRecord.objects.filter(kind="access").order_by("seq")
    assert [(r.actor, r.outcome, r.extra) for r in reads] == [
        ("user:max", "list", {"filters": {"tool": "get_host"}}),
        ("user:max", "export", {"filters": {"outcome": "ok"}, "format": "jsonl"}),
    ]
    assert verify()[0] == 0


# -- who may read ------------------------------------------------------------------------------------------
def test_an_analyst_sees_only_their_own_investigations_trail(trail, make_user, client):
    first, second = trail
    ana = make_user("ana-2", ANALYST)
    first.alert.submitted_by = ana
    first.alert.save()
    client.login(username="ana-2", password=PASSWORD)
    seqs = {item["seq"] for item in client.get("/api/audit").json()["items"]}
    assert seqs == {1, 2, 3, 4}
    assert client.get("/audit/records/5/").status_code == 404
    assert client.get(f"/audit/investigations/{second.pk}/").status_code == 404
    assert client.get(f"/audit/investigations/{first.pk}/").status_code == 200
    exported = b"".join(client.get("/audit/export", {"format": "jsonl"}).streaming_content).decode()
    assert {json.loads(line)["seq"] for line in exported.splitlines()[:-1]} == {1, 2, 3, 4}
    assert client.get("/api/audit/digest").status_code == 403


def test_a_team_grant_shows_that_investigations_trail(trail, make_user, client):
    from django.contrib.auth.models import Group
    from guardian.shortcuts import assign_perm

    _, second = trail
    make_user("tess", ANALYST).groups.add(team := Group.objects.create(name="team-emea"))
    assign_perm("investigations.view_investigation", team, second)
    client.login(username="tess", password=PASSWORD)
    assert {item["seq"] for item in client.get("/api/audit").json()["items"]} == {5, 6}


def test_a_user_without_a_role_is_refused(trail, make_user, client):
    make_user("nobody")
    client.login(username="nobody", password=PASSWORD)
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/export", {"format": "csv"}).status_code == 403
    assert client.get("/api/audit").status_code == 403
    client.logout()
    assert client.get("/api/audit").status_code == 401
    assert client.get("/audit/").status_code == 302


def test_nobody_can_edit_a_record(trail, admin_user, manager, client):
    client.login(username="ada", password=PASSWORD)
    record = AuditRecord.objects.get(seq=1)
    assert client.post("/api/audit", {}).status_code == 405
    assert client.delete("/api/audit").status_code == 405
    change = f"/admin/investigations/auditrecord/{record.pk}/change/"
    assert client.post(change, {"outcome": "error"}).status_code == 403
    assert client.post(f"/admin/investigations/auditrecord/{record.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/investigations/auditrecord/add/").status_code == 403
    assert AuditRecord.objects.get(seq=1).outcome == "ok" and verify()[0] == 0


@pytest.mark.parametrize("reader", ["max", "ada"])  # a manager, an admin
def test_the_pages_show_records_and_a_timeline(trail, manager, admin_user, client, reader):
    first, _ = trail
    client.login(username=reader, password=PASSWORD)
    listing = client.get("/audit/", {"investigation": first.pk}).content.decode()
    assert listing.count("<tr data-seq=") == 4
    record = client.get("/audit/records/3/").content.decode()
    assert keyed_hash("J.Doe") in record and "J.Doe" not in record
    timeline = client.get(f"/audit/investigations/{first.pk}/").content.decode()
    assert timeline.count('<g class="bar"') == 4 and 'data-outcome="error"' in timeline


def test_the_trail_pages_show_what_reorders_or_hides_text_as_its_escapes(trail, client, manager):
    """A manager reads the trail as it was recorded: an alert's title or a call's argument holding a
    right-to-left override or a zero-width space reads otherwise than it is."""
    from investigations.models import Alert

    first, _ = trail
    Alert.objects.filter(pk=first.alert_id).update(title="Invoice \u202efdp.exe")
    (record,) = add(
        1, correlation_id=first.correlation_id, tool="get_host", server="edr", arguments={"host": "ws\u200b-1"}
    )
    client.force_login(manager)
    shown = client.get(f"/audit/records/{record.seq}/").content.decode()
    shown += client.get(f"/audit/investigations/{first.pk}/").content.decode()
    assert "\u202e" not in shown and "\u200b" not in shown
    assert "ws\\u200b-1" in shown and "Invoice \\u202efdp.exe" in shown


def test_a_refused_decision_is_recorded_as_denied(waiting, make_user):
    from investigations.approvals import services as approvals
    from tests.conftest import MANAGER

    investigation, request = waiting
    boss = make_user("boss", MANAGER)
    with pytest.raises(approvals.NotAllowed):
        approvals.approve(request.pk, boss)
    denied = AuditRecord.objects.get(outcome="denied")
    assert (denied.kind, denied.actor, denied.tool, denied.correlation_id) == (
        "decision",
        "user:boss",
        "isolate_host",
        investigation.correlation_id,
    )
    assert denied.tool_use_id == request.tool_use_id
    assert verify()[0] == 0
