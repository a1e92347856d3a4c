"""The audit trail: one hash-chained record per tool call, decision and change, its head; and who reads which records."""

from datetime import timedelta

from django.db import models
from django.db.models import Q

from core.roles import ANALYST, has_role
from investigations.models.approvals import ACTOR_MAX, ActionTransition
from investigations.models.runs import Investigation

READ_ALL = "investigations.view_auditrecord"


def reads_whole_trail(user) -> bool:
    """Managers and admins (the model permission `view_auditrecord`) read every record."""
    return bool(user.is_authenticated and user.is_active and user.has_perm(READ_ALL))


def may_read_trail(user) -> bool:
    """Managers and admins read the whole trail; analysts their own investigations' trails; nobody else any."""
    return reads_whole_trail(user) or bool(user.is_authenticated and user.is_active and has_role(user, ANALYST))


def trails_visible_to(user):
    """The investigations whose trails `user` reads: every one for a reader of the whole trail; for an
    analyst their own: those granted to them or their team (the investigation's rule,
    InvestigationQuerySet.granted_to), those they raised (submitted the alert, asked for the
    investigation) and those they decided an action in; none for anyone else."""
    investigations = Investigation.objects.all()
    if reads_whole_trail(user):
        return investigations
    if not may_read_trail(user):
        return investigations.none()
    decided = ActionTransition.objects.filter(actor=f"user:{user.get_username()}").values("request__investigation")
    return investigations.filter(
        Q(pk__in=Investigation.objects.granted_to(user).values("pk"))
        | Q(alert__submitted_by=user)
        | Q(requested_by=user)
        | Q(pk__in=decided)
    )


class AuditRefused(Exception):
    """The audit trail is append-only: a record is never changed or removed, and only the chain adds one."""


class AuditQuerySet(models.QuerySet):
    def visible_to(self, user):
        """The records `user` may read (architecture rule 12): every one for a reader of the whole
        trail; else the records of the investigations whose trails they read (`trails_visible_to`),
        matched by correlation id. Records of no investigation (admin changes, sign-ins, reads of
        the trail) are only the whole trail's."""
        if reads_whole_trail(user):
            return self.all()
        return self.filter(correlation_id__in=trails_visible_to(user).correlation_ids())

    def update(self, **kwargs):
        raise AuditRefused("Audit records cannot be changed.")

    def delete(self):
        raise AuditRefused("Audit records cannot be deleted.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AuditRefused("Audit records cannot be changed.")

    def bulk_create(self, objs, *args, **kwargs):
        raise AuditRefused("Audit records are added one chain link at a time, by investigations.audit.chain.append.")

    def _chain_insert(self, records, batch_size):
        """Only investigations.audit.chain calls this, holding the chain head's lock."""
        return super().bulk_create(records, batch_size=batch_size)


class AuditRecord(models.Model):
    """One tool call, approval decision, admin change or reading of the trail, as evidence.

    Append-only and hash-chained: `hash` covers the record's content and `prev_hash`, the hash of
    the record before it in `seq` order (investigations.audit.chain). Written only by investigations.audit.chain;
    sensitive argument values arrive already replaced by keyed hashes.
    """

    class Kind(models.TextChoices):
        TOOL_CALL = "tool_call", "tool call"
        DECISION = "decision", "approval decision"
        ADMIN_CHANGE = "admin_change", "admin change"
        ACCESS = "access", "audit trail read"
        INTAKE = "intake", "alert refused"
        SIGN_IN = "sign_in", "sign-in"

    seq = models.BigIntegerField(unique=True, help_text="Position in the hash chain, from 1, without gaps.")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TOOL_CALL)
    server = models.CharField(max_length=40, blank=True)
    tool = models.CharField(max_length=60, blank=True)
    tool_use_id = models.CharField(max_length=64, blank=True, help_text="The model's id of the call it records.")
    arguments = models.JSONField(default=dict)
    outcome = models.CharField(max_length=20)
    reason = models.CharField(max_length=60, blank=True)
    idempotency_key = models.CharField(max_length=64, blank=True, db_index=True)
    backend_status = models.CharField(max_length=40, blank=True)
    latency_ms = models.FloatField(default=0)
    correlation_id = models.CharField(max_length=64, blank=True)
    actor = models.CharField(max_length=ACTOR_MAX)
    source = models.CharField(max_length=60, blank=True)
    extra = models.JSONField(default=dict, blank=True)
    text = models.TextField(blank=True, help_text="The visible fields, lower-cased, for the free-text search.")

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        # The list is read newest first (keyset on seq) under one filter at a time.
        indexes = [
            models.Index(fields=["correlation_id", "seq"], name="audit_correlation_seq"),
            models.Index(fields=["tool", "seq"], name="audit_tool_seq"),
            models.Index(fields=["server", "seq"], name="audit_server_seq"),
            models.Index(fields=["outcome", "seq"], name="audit_outcome_seq"),
            models.Index(fields=["actor", "seq"], name="audit_actor_seq"),
            models.Index(fields=["kind", "seq"], name="audit_kind_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.created_at:%Y-%m-%d %H:%M:%S} {self.tool or self.kind} {self.outcome}"

    def save(self, *args, **kwargs):
        raise AuditRefused("Audit records are added by investigations.audit.chain.append and never changed.")

    def delete(self, *args, **kwargs):
        raise AuditRefused("Audit records cannot be deleted.")

    @property
    def investigation_id(self) -> int | None:
        prefix, _, number = self.correlation_id.partition("-")
        return int(number) if prefix == "investigation" and number.isdigit() else None

    @property
    def started_at(self):
        return self.created_at - timedelta(milliseconds=self.latency_ms)


class AuditHead(models.Model):
    """The chain's last link: one row, locked by each append so links are made one at a time.

    The database lets it move only forward, to a record's hash (migration 0011); `seal` is the
    console's HMAC of (seq, hash), which a role with rights on the database alone cannot make.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)
    seal = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"audit head #{self.seq}"
