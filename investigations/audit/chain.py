"""The audit trail's one writer, its hash chain and its checks.

Every record is a link of one chain: `hash` = SHA-256 of the previous record's hash and the
record's own content (canonical JSON, `seq` and time included). Links are made one at a time
under the lock of the chain's head row, so concurrent writers (web processes, workers) cannot
fork the chain; `seq` is unique as a backstop. Nothing else writes AuditRecord rows: the model
refuses save, update and delete, and on PostgreSQL a trigger refuses UPDATE and DELETE.

The head row moves only forward, to a record's hash (a database trigger), and carries `seal`, an
HMAC by the console's key: the database cannot tell a runtime role's INSERT from the console's,
so a head moved onto an appended forgery is found by its seal. The console neither builds on nor
signs an unsealed head.

`verify` walks the chain and names the first record that was edited, deleted, inserted or
reordered. `signed_digest` signs the chain head (Ed25519) so an export can be checked offline
against a head the console vouched for.
"""

import base64
import functools
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from investigations.audit import merkle
from investigations.models import AuditHead, AuditRecord, AuditRefused
from investigations.models.approvals import ACTOR_MAX
from toolserver.audit import Outcome, ToolCallAudit, canonical_json

GENESIS = "0" * 64
CHAIN = "gatehouse-audit"
# The content a link's hash covers: every field but the hashes themselves and the search text.
CONTENT_FIELDS = (
    "seq",
    "created_at",
    "kind",
    "server",
    "tool",
    "tool_use_id",
    "arguments",
    "outcome",
    "reason",
    "idempotency_key",
    "backend_status",
    "latency_ms",
    "correlation_id",
    "actor",
    "source",
    "extra",
)
# Shown in the list, the export and the free-text search.
SEARCHED_FIELDS = (
    "kind",
    "server",
    "tool",
    "outcome",
    "reason",
    "idempotency_key",
    "backend_status",
    "correlation_id",
    "actor",
    "source",
)


# -- writing ---------------------------------------------------------------------------------------
def record_tool_call(event: ToolCallAudit) -> AuditRecord:
    """The sink of the tool layer (settings.TOOLSERVER_AUDIT_SINK): one record per call through the gateway.

    The gateway writes it in a transaction of its own with what the caller keeps of the result, and
    nothing there goes on after a failure: no savepoint, two round trips fewer on every tool call.
    """
    return append(
        savepoint=False,
        kind=AuditRecord.Kind.TOOL_CALL,
        server=event.server,
        tool=event.tool,
        tool_use_id=event.tool_use_id,
        arguments=event.arguments,
        outcome=event.outcome,
        reason=event.reason,
        idempotency_key=event.idempotency_key,
        backend_status=event.backend_status,
        latency_ms=event.latency_ms,
        correlation_id=event.correlation_id,
        actor=event.actor,
        source=event.source,
        extra=event.extra,
    )


def record_access(user, what: str, **details) -> AuditRecord:
    """Reading or exporting the trail is itself evidence: who looked at what, with which filters."""
    return append(kind=AuditRecord.Kind.ACCESS, outcome=what, actor=f"user:{user.get_username()}", extra=details)


def record_admin_change(
    actor: str, what: str, *, before: dict, after: dict, server: str = "", tool: str = "", correlation_id: str = ""
) -> AuditRecord:
    """A change of configuration, permissions or credentials (credentials as fingerprints only)."""
    return append(
        kind=AuditRecord.Kind.ADMIN_CHANGE,
        outcome=what,
        actor=actor,
        server=server,
        tool=tool,
        correlation_id=correlation_id,
        extra={"before": before, "after": after},
    )


def record_intake_refused(integration: str, reason: str, **details) -> AuditRecord:
    """An alert an integration may not send (another system's source): who tried, and what it claimed."""
    return append(
        kind=AuditRecord.Kind.INTAKE,
        outcome=Outcome.DENIED,
        reason=reason,
        actor=f"integration:{integration}",
        extra=details,
    )


def record_sign_in(what: str, username: str, address: str | None, **details) -> AuditRecord:
    """A sign-in, a failed one (`username` as typed) or a sign-out, and the address it came from; never a
    password or token. `details`, those given: single sign-on's `how="sso"` and why it was refused
    (`reason`); a second factor enrolled or removed, a step-up (the factor's kind, never a code or a key)."""
    return append(
        kind=AuditRecord.Kind.SIGN_IN,
        outcome=what,
        actor=f"user:{username}"[:ACTOR_MAX],
        extra={"address": address or "", **{name: value for name, value in details.items() if value}},
    )


def append(*, savepoint: bool = True, **fields) -> AuditRecord:
    (record,) = append_many([fields], savepoint=savepoint)
    return record


def append_many(entries, *, batch_size: int = 1000, savepoint: bool = True) -> list[AuditRecord]:
    """Link each entry (AuditRecord field values) onto the chain, in order, in one transaction.

    `savepoint=False`: inside a caller's transaction, part of it without a savepoint of its own, so a
    failure here fails the caller's whole transaction (which must not go on after catching it).
    """
    # Their JSON as it will be stored, before the chain's lock: it may ask the database (_as_stored).
    entries = [_json_as_stored(fields) for fields in entries]
    with transaction.atomic(savepoint=savepoint):
        seq, prev_hash = _locked_head()
        records = []
        for fields in entries:
            seq += 1
            record = AuditRecord(seq=seq, prev_hash=prev_hash, **{"created_at": timezone.now(), **fields})
            _normalise(record)
            record.hash = link_hash(prev_hash, content(record))
            record.text = search_text(record)
            prev_hash = record.hash
            records.append(record)
        AuditRecord.objects.all()._chain_insert(records, batch_size)
        with connection.cursor() as cursor:
            cursor.execute(_MOVE_HEAD, [seq, prev_hash, seal(seq, prev_hash)])
    return records


def seal(seq: int, hash_value: str) -> str:
    """The head's seal: only the console, holding the signing key, moves the head."""
    key = hashlib.sha256(b"gatehouse audit head seal v1\n" + settings.AUDIT_SIGNING_KEY.encode()).digest()
    return hmac.new(key, f"{CHAIN}:{seq}:{hash_value}".encode(), hashlib.sha256).hexdigest()


def unsealed(seq: int, hash_value: str, seal_value: str) -> str | None:
    """Why the head cannot be trusted, or None (the empty chain needs no seal)."""
    if (seq, hash_value) == (0, GENESIS) or hmac.compare_digest(seal_value, seal(seq, hash_value)):
        return None
    return f"the chain head #{seq} was not moved by the chain's writer (its seal does not match): records up to it may be forged"


def _head() -> tuple[int, str]:
    """The head as stored, refused when its seal does not match."""
    seq, hash_value, seal_value = AuditHead.objects.filter(pk=1).values_list("seq", "hash", "seal").first() or (
        0,
        GENESIS,
        "",
    )
    if problem := unsealed(seq, hash_value, seal_value):
        raise AuditRefused(problem)
    return seq, hash_value


# Every record locks the head and moves it: two fixed statements, said here in SQL rather than built by
# the ORM for each record (their building was a third of a record's CPU).
_HEAD = "SELECT seq, hash, seal FROM investigations_audithead WHERE id = 1"
_MOVE_HEAD = "UPDATE investigations_audithead SET seq = %s, hash = %s, seal = %s WHERE id = 1"


def _locked_head() -> tuple[int, str]:
    """Lock the head row (made on first use, e.g. after a test's flush), read it and check its seal."""
    head = _read_locked_head()
    if head is None:
        AuditHead.objects.get_or_create(pk=1)
        head = _read_locked_head()
    seq, hash_value, seal_value = head
    if problem := unsealed(seq, hash_value, seal_value):
        raise AuditRefused(problem)
    return seq, hash_value


def _read_locked_head() -> tuple[int, str, str] | None:
    # SQLite has no row locks: its writers take turns.
    locking = " FOR UPDATE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(_HEAD + locking)
        return cursor.fetchone()


def _json_as_stored(fields: dict) -> dict:
    return fields | {name: _as_stored(fields.get(name) or {}) for name in ("arguments", "extra")}


def _normalise(record: AuditRecord) -> None:
    """Give the record the values it will read back from the database, so its hash still matches then (its
    JSON given so already: _json_as_stored)."""
    record.latency_ms = round(float(record.latency_ms or 0), 3)
    record.created_at = record.created_at.astimezone(UTC)


def _as_stored(value: dict) -> dict:
    """JSON's types; on PostgreSQL, a float as jsonb keeps it (a number, not its spelling: 1e+20 comes back an
    integer, -0.0 as 0.0), asked of the database itself, and only when there is a float to ask about."""
    value = json.loads(json.dumps(value, default=str))
    if connection.vendor == "postgresql" and _has_float(value):
        with connection.cursor() as cursor:
            cursor.execute("SELECT %s::jsonb", [json.dumps(value)])
            (stored,) = cursor.fetchone()
        value = json.loads(stored) if isinstance(stored, str) else stored
    return value


def _has_float(value) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(item) for item in value.values())
    return isinstance(value, list) and any(_has_float(item) for item in value)


# -- the chain -------------------------------------------------------------------------------------
def content(record) -> dict:
    """A record's hashed content, from a model instance or an exported row (a dict)."""
    get = record.get if isinstance(record, dict) else lambda name: getattr(record, name)
    values = {name: get(name) for name in CONTENT_FIELDS}
    when = values["created_at"]
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    values["created_at"] = when.astimezone(UTC).isoformat(timespec="microseconds")
    values["latency_ms"] = float(values["latency_ms"])
    values["seq"] = int(values["seq"])
    return values


def link_hash(prev_hash: str, record_content: dict) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_json(record_content)).hexdigest()


def search_text(record: AuditRecord) -> str:
    parts = [str(getattr(record, name)) for name in SEARCHED_FIELDS]
    parts += [str(value) for value in record.arguments.values()]
    return " ".join(part for part in parts if part).lower()


@dataclass(frozen=True)
class Break:
    """The first place the chain is not what was written."""

    problem: str  # edited, deleted, inserted, reordered
    seq: int  # the record named (for a deletion: the missing position)
    record_id: int | None
    detail: str

    def __str__(self) -> str:
        return f"{self.problem}: {self.detail}"


def verify(records, head: tuple[int, str] | None = None, *, owner_of=None) -> Break | None:
    """Walk `records` (in seq order, full chain from #1) and return the first break, or None.

    `owner_of(hash)` finds the record holding a hash (seq, id) to tell a reordering or an
    insertion from an edit; `head` is the head row's (seq, hash), to catch the chain's end.
    """
    expected_seq, prev_hash, before_prev_hash, previous = 1, GENESIS, None, None
    for record in records:
        content_ok = link_hash(record.prev_hash, content(record)) == record.hash
        linked = record.prev_hash == prev_hash
        if record.seq != expected_seq:
            if record.seq > expected_seq and content_ok:
                missing = f"#{expected_seq}" if record.seq == expected_seq + 1 else f"#{expected_seq}–#{record.seq - 1}"
                return Break(
                    "deleted",
                    expected_seq,
                    None,
                    f"record {missing} is missing before record #{record.seq} (id {record.id})",
                )
            return Break(
                "reordered",
                record.seq,
                record.id,
                f"record #{record.seq} (id {record.id}) is out of place after #{expected_seq - 1}",
            )
        if not (content_ok and linked):
            owner = owner_of(record.prev_hash) if owner_of and not linked else None
            if owner and owner[0] > record.seq:
                return Break(
                    "reordered",
                    record.seq,
                    record.id,
                    f"record #{record.seq} (id {record.id}) links to #{owner[0]}, which comes after it",
                )
            if not linked and record.prev_hash == before_prev_hash and previous is not None:
                return Break(
                    "inserted",
                    previous.seq,
                    previous.id,
                    f"record #{previous.seq} (id {previous.id}) is not part of the chain: #{record.seq} links past it",
                )
            if not linked and content_ok and previous is not None:
                return Break(
                    "edited",
                    previous.seq,
                    previous.id,
                    f"record #{previous.seq} (id {previous.id}) was changed and re-hashed: #{record.seq} still links to its original hash",
                )
            return Break(
                "edited", record.seq, record.id, f"record #{record.seq} (id {record.id}) no longer matches its hash"
            )
        expected_seq, before_prev_hash, prev_hash, previous = record.seq + 1, prev_hash, record.hash, record
    last_seq = expected_seq - 1
    if head is not None:
        head_seq, head_hash = head
        if head_seq > last_seq:
            return Break(
                "deleted",
                last_seq + 1,
                None,
                f"records #{last_seq + 1}–#{head_seq} are missing from the end of the chain",
            )
        if head_seq < last_seq:
            return Break("inserted", head_seq + 1, None, f"records after #{head_seq} are beyond the chain's head")
        if head_seq and head_hash != prev_hash:
            return Break(
                "edited",
                last_seq,
                previous.id if previous else None,
                f"record #{last_seq} does not match the chain's head",
            )
    return None


def verify_database(chunk_size: int = 5000) -> tuple[int, Break | None]:
    """The whole chain as stored, up to the head as read when it starts: (records checked, first break or None)."""
    try:
        head = _head()
    except AuditRefused as refused:  # the walk still names an earlier break first
        head, moved = AuditHead.objects.values_list("seq", "hash").get(pk=1), str(refused)
    else:
        moved = None
    checked = 0

    def walk():
        nonlocal checked
        # Up to the head read above only: a record appended since is no break (the next run checks it).
        for record in AuditRecord.objects.filter(seq__lte=head[0]).order_by("seq").iterator(chunk_size=chunk_size):
            checked += 1
            yield record

    def owner_of(hash_value):
        return AuditRecord.objects.filter(hash=hash_value).values_list("seq", "id").first()

    found = verify(walk(), head, owner_of=owner_of)
    if found is None:
        found = _beyond_head()
    if found is None and moved:
        found = Break("inserted", head[0], None, moved)
    return checked, found


def _beyond_head() -> Break | None:
    """Records stored past the head as it is now. One statement reads both: an append moves the head in
    the transaction that adds the record, so only a record the chain's writer never added is found."""
    now = Coalesce(Subquery(AuditHead.objects.filter(pk=1).values("seq")), 0)
    head_seq = (
        AuditRecord.objects.annotate(head_seq=now)
        .filter(seq__gt=F("head_seq"))
        .values_list("head_seq", flat=True)
        .first()
    )
    if head_seq is None:
        return None
    return Break("inserted", head_seq + 1, None, f"records after #{head_seq} are beyond the chain's head")


# -- the signed digest -------------------------------------------------------------------------------
@functools.cache
def _signing_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    secret = settings.AUDIT_SIGNING_KEY.encode()
    seed = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"gatehouse audit digest v1").derive(secret)
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key() -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = _signing_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def signed_digest() -> dict:
    """The chain head, signed: {chain, seq, hash, root, signed_at, public_key, signature}."""
    seq, head_hash = _head()
    root = chain_tree(seq).root
    return sign_head(seq, head_hash, root)


def chain_tree(size: int, *, proofs: bool = False) -> merkle.Tree:
    """The Merkle tree of records #1…#size: its head, and with `proofs` any record's inclusion proof."""
    hashes = AuditRecord.objects.filter(seq__lte=size).order_by("seq").values_list("hash", flat=True)
    return merkle.Tree(hashes.iterator(chunk_size=5000), size, keep=proofs)


def sign_head(seq: int, head_hash: str, root: str, **signed) -> dict:
    """Sign the chain up to record #seq (its hash and tree head), and whatever else is `signed` with it."""
    body = {
        "chain": CHAIN,
        "seq": seq,
        "hash": head_hash,
        "root": root,
        "signed_at": timezone.now().astimezone(UTC).isoformat(),
        **signed,
    }
    signature = _signing_key().sign(canonical_json(body))
    return body | {"public_key": public_key(), "signature": base64.b64encode(signature).decode()}


def check_digest(digest: dict, trusted_public_key: str | None = None) -> bool:
    """Whether `digest` was signed by the key (the one given, else the digest's own)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(trusted_public_key or digest["public_key"]))
        body = {name: value for name, value in digest.items() if name not in ("public_key", "signature")}
        key.verify(base64.b64decode(digest["signature"]), canonical_json(body))
    except (InvalidSignature, KeyError, ValueError, TypeError):
        return False
    return True
