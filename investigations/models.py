"""Alerts, the investigations they start, the events each investigation streams, and the audit record."""

import uuid
from datetime import timedelta

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Integration(models.Model):
    """A system allowed to POST alerts (a SIEM webhook). Its token is shown once and kept only as a hash.

    It may send alerts only of its `sources` (set with `manage.py integrations sources`): a source
    belongs to one live integration, so no integration can speak for another system.
    """

    name = models.CharField(max_length=80, unique=True)
    sources = models.JSONField(default=list, blank=True, help_text="The alert sources it may send.")
    token_prefix = models.CharField(max_length=16, help_text="The token's first characters, to tell tokens apart.")
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class ApiToken(models.Model):
    """A person's token for the API outside the browser (approve from a script or a chat bot).

    It acts with its user's permissions, re-checked on every request. Shown once; kept as a hash.
    It expires (GATEHOUSE_API_TOKEN_DAYS) and is revoked when its user's password changes or the
    user is deactivated (investigations/tokens.py).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80, help_text="What it is for.")
    token_prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.user} / {self.name}"


class Alert(models.Model):
    """An alert as received. Its free text is untrusted data: shown escaped, given to the model as data."""

    class Severity(models.TextChoices):
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"
        CRITICAL = "critical"

    source = models.CharField(max_length=64)
    external_id = models.CharField(max_length=128)
    title = models.CharField(max_length=300)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    host = models.CharField(max_length=64, blank=True)
    account = models.CharField(max_length=64, blank=True, help_text="The user the alert names.")
    observed_at = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    integration = models.ForeignKey(Integration, null=True, blank=True, on_delete=models.PROTECT, related_name="alerts")
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            # An alert is the same alert only from the same integration: another one sending its
            # ids first cannot make it a repeat. Alerts typed in the console have no integration.
            models.UniqueConstraint(
                fields=["integration", "source", "external_id"], condition=Q(integration__isnull=False),
                name="alert_unique_per_integration",
            ),
            models.UniqueConstraint(
                fields=["source", "external_id"], condition=Q(integration__isnull=True),
                name="alert_unique_without_integration",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"

    @property
    def trigger(self) -> str:
        """What a write's idempotency key names as its cause (architecture rule 6)."""
        return f"{self.source}:{self.external_id}"


class Investigation(models.Model):
    """One agent run over one alert, with its conversation saved after every step.

    `messages` is the conversation as the Messages API takes it; `tool_results` holds the
    results of the last assistant turn's tool calls as each one completes, so a worker that
    dies mid-turn is followed by one that repeats none of them. The lease says which worker
    runs it now: a worker that stops renewing it has died, and another takes over.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        WAITING = "waiting", "waiting for approval"
        COMPLETED = "completed"
        FAILED = "failed"

    class Verdict(models.TextChoices):
        MALICIOUS = "malicious"
        BENIGN = "benign"
        INCONCLUSIVE = "inconclusive"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="investigations")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    verdict = models.CharField(max_length=12, choices=Verdict.choices, blank=True)
    summary = models.TextField(blank=True)
    evidence = models.JSONField(default=list, blank=True)
    end_reason = models.CharField(max_length=200, blank=True, help_text="Why it ended early: a budget, a failure.")
    model = models.CharField(max_length=80, help_text="The model id the investigation runs on.")

    messages = models.JSONField(default=list, blank=True)
    tool_results = models.JSONField(default=dict, blank=True)
    tool_calls_used = models.PositiveIntegerField(default=0)
    tokens_used = models.PositiveIntegerField(default=0)
    budget_tool_calls = models.PositiveIntegerField()
    budget_tokens = models.PositiveIntegerField()
    budget_seconds = models.PositiveIntegerField()

    lease_owner = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_seq = models.PositiveIntegerField(default=0, help_text="The seq of its latest event.")

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Time spent waiting for analysts does not count against the time budget.
    waiting_since = models.DateTimeField(null=True, blank=True)
    waited_seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["completed"]) | Q(verdict=""), name="investigation_verdict_only_when_completed"
            ),
        ]

    def __str__(self) -> str:
        return f"Investigation {self.pk} of {self.alert}"

    @property
    def correlation_id(self) -> str:
        """What the audit records of its tool calls carry."""
        return self.correlation_id_of(self.pk)

    @staticmethod
    def correlation_id_of(pk: int) -> str:
        return f"investigation-{pk}"

    @property
    def model_name(self) -> str:
        from investigations.llm import display_name

        return display_name(self.model)

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.COMPLETED, self.Status.FAILED)


class Event(models.Model):
    """One step of an investigation as the transcript shows it, numbered in order."""

    class Kind(models.TextChoices):
        TEXT = "text"
        TOOL_CALL = "tool_call"
        TOOL_RESULT = "tool_result"
        STATUS = "status"
        VERDICT = "verdict"
        ACTION = "action"  # an action request was made or changed state

    investigation = models.ForeignKey(Investigation, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=12, choices=Kind.choices)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["investigation", "seq"]
        constraints = [models.UniqueConstraint(fields=["investigation", "seq"], name="event_unique_seq")]

    def __str__(self) -> str:
        return f"{self.investigation_id}#{self.seq} {self.kind}"

    def as_message(self) -> dict:
        """The event as the websocket sends it and the page renders it."""
        return {"seq": self.seq, "kind": self.kind, "at": self.created_at.isoformat(), "data": self.data}


class ToolPolicy(models.Model):
    """How one write tool is gated (architecture rule 9). Who may approve: the object permission
    `approve_tool` on this row (django-guardian), granted to users or groups."""

    tool = models.CharField(max_length=60, unique=True)
    requires_approval = models.BooleanField(default=True)
    approvals_needed = models.PositiveSmallIntegerField(
        default=1, help_text="2 for four-eyes: two different people must approve."
    )
    expiry_seconds = models.PositiveIntegerField(
        default=3600, validators=[MinValueValidator(60)], help_text="A request not decided by then expires."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [("approve_tool", "Can approve action requests for this tool")]
        constraints = [
            models.CheckConstraint(condition=Q(approvals_needed__in=[1, 2]), name="policy_approvals_1_or_2"),
        ]

    def __str__(self) -> str:
        return self.tool


class Budgets(models.Model):
    """What each new investigation may spend (architecture rule 7): one row, set by an admin.

    Its first values come from the deployment (GATEHOUSE_BUDGET_*); a running investigation
    keeps the budgets it started with.
    """

    tool_calls = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    tokens = models.PositiveIntegerField(validators=[MinValueValidator(1000)])
    seconds = models.PositiveIntegerField(validators=[MinValueValidator(10)])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "budgets"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="budgets_single_row"),
            models.CheckConstraint(
                condition=Q(tool_calls__gte=1, tokens__gte=1000, seconds__gte=10), name="budgets_minimums"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tool_calls} tool calls, {self.tokens} tokens, {self.seconds} s"

    @classmethod
    def current(cls) -> "Budgets":
        budgets, _ = cls.objects.get_or_create(pk=1, defaults=settings.INVESTIGATION_BUDGETS)
        return budgets


class ActionRequest(models.Model):
    """A privileged write the agent asked for, waiting for (or past) an analyst's decision.

        pending -> approved -> executing -> succeeded | failed
        pending -> rejected | expired | cancelled

    Each transition is one guarded update (investigations/actions.py) and one ActionTransition.
    """

    class State(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        EXECUTING = "executing"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        REJECTED = "rejected"
        EXPIRED = "expired"
        CANCELLED = "cancelled"

    FINAL = (State.SUCCEEDED, State.FAILED, State.REJECTED, State.EXPIRED, State.CANCELLED)

    investigation = models.ForeignKey(Investigation, on_delete=models.PROTECT, related_name="action_requests")
    tool_use_id = models.CharField(max_length=100)
    tool = models.CharField(max_length=60)
    server = models.CharField(max_length=40)
    arguments = models.JSONField(help_text="As validated at the boundary.")
    target = models.CharField(max_length=200, help_text="What it acts on, for people: 'host=ws-fin-07'.")
    reason = models.TextField(blank=True, help_text="The agent's stated reason (untrusted text).")
    evidence = models.JSONField(default=list, blank=True, help_text="The transcript events the request rests on.")
    risk = models.JSONField(default=list, blank=True, help_text="Blast radius notes, e.g. 'host is a domain controller'.")
    idempotency_key = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    approvals_needed = models.PositiveSmallIntegerField(default=1)
    expires_at = models.DateTimeField(db_index=True)
    result = models.JSONField(null=True, blank=True, help_text="The envelope the model receives.")
    outcome = models.CharField(max_length=300, blank=True, help_text="The result in a line, for people.")
    lease_expires_at = models.DateTimeField(null=True, blank=True, help_text="While executing: when a stalled run may be retried.")
    notified_at = models.DateTimeField(null=True, blank=True, help_text="When approvers were told it is waiting long.")
    notify_claimed_until = models.DateTimeField(null=True, blank=True, help_text="A sweep is emailing its approvers.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["investigation", "tool_use_id"], name="action_unique_tool_use"),
        ]

    def __str__(self) -> str:
        return f"{self.tool} {self.target} ({self.state})"

    @property
    def is_final(self) -> bool:
        return self.state in self.FINAL


class ActionApproval(models.Model):
    """One person's approval; four-eyes needs two rows from two different people."""

    request = models.ForeignKey(ActionRequest, on_delete=models.PROTECT, related_name="approvals")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField(blank=True)
    # Set by the decision to the moment it compared with the deadline (investigations.actions).
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request", "user"], name="approval_once_per_user")]

    def __str__(self) -> str:
        return f"approval of request {self.request_id} by user {self.user_id}"


class ActionTransition(models.Model):
    """Who moved a request from one state to another, when and why."""

    request = models.ForeignKey(ActionRequest, on_delete=models.PROTECT, related_name="transitions")
    from_state = models.CharField(max_length=10, blank=True)
    to_state = models.CharField(max_length=10)
    actor = models.CharField(max_length=150, help_text="'agent', 'system' or 'user:<username>'.")
    reason = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"request {self.request_id}: {self.from_state or '-'} -> {self.to_state} by {self.actor}"


class AuditRefused(Exception):
    """The audit trail is append-only: a record is never changed or removed, and only the chain adds one."""


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditRefused("Audit records cannot be changed.")

    def delete(self):
        raise AuditRefused("Audit records cannot be deleted.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AuditRefused("Audit records cannot be changed.")

    def bulk_create(self, objs, *args, **kwargs):
        raise AuditRefused("Audit records are added one chain link at a time, by investigations.audit.append.")

    def _chain_insert(self, records, batch_size):
        """Only investigations.audit calls this, holding the chain head's lock."""
        return super().bulk_create(records, batch_size=batch_size)


class AuditRecord(models.Model):
    """One tool call, approval decision, admin change or reading of the trail, as evidence.

    Append-only and hash-chained: `hash` covers the record's content and `prev_hash`, the hash of
    the record before it in `seq` order (investigations.audit). Written only by investigations.audit;
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
    actor = models.CharField(max_length=150)
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
        raise AuditRefused("Audit records are added by investigations.audit.append and never changed.")

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
