"""The human gate: per-tool approval policies, the requests the agent makes, their approvals and history."""

import json

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core import transitions
from core.text import as_read, as_read_line
from investigations.models.runs import Investigation

# Who did something, as the history and the audit trail name them: "user:" and up to two usernames of
# Django's 150 characters (a four-eyes write's approvers, comma-separated).
ACTOR_MAX = 320


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


class ActionRequestQuerySet(models.QuerySet):
    def visible_to(self, user):
        """The requests `user` may see: those of the investigations they may see (the investigation's
        rule, InvestigationQuerySet.visibility, applied through the foreign key; architecture rule 12)."""
        return self.filter(Investigation.objects.visibility(user, through="investigation"))

    def for_cards(self):
        """With what a decision card shows of each (its alert, approvals and transitions), read in three
        queries however many cards."""
        return self.select_related("investigation__alert").prefetch_related("approvals", "transitions")


class ActionRequest(models.Model):
    """A privileged write the agent asked for, waiting for (or past) an analyst's decision.

        pending -> approved -> executing -> succeeded | failed
        executing -> unconfirmed -> succeeded | failed   (a person checked the backend and said)
        pending -> rejected | expired | cancelled

    `unconfirmed`: the write was sent once, its worker died before the answer was recorded, and the
    backend cannot say whether it took effect. It is not final: the investigation waits on it, and
    only a person allowed to approve the tool ends it (approvals.services.confirm_outcome).
    TRANSITIONS is that machine, the one place it is written: each move is one guarded update
    (investigations/approvals/services.py, which refuses a move not in it before touching the row)
    and one ActionTransition; the pages get it from the same table (core/transitions.py).
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
        UNCONFIRMED = "unconfirmed", "Outcome unknown: check and confirm"

    # Where each state may go (architecture rule 9). A state listing itself records a step without
    # changing: one approval of two; an execution taken over after its worker died.
    TRANSITIONS: dict[str, set[str]] = {
        State.PENDING: {State.PENDING, State.APPROVED, State.REJECTED, State.EXPIRED, State.CANCELLED},
        State.APPROVED: {State.EXECUTING},
        State.EXECUTING: {State.EXECUTING, State.SUCCEEDED, State.FAILED, State.UNCONFIRMED},
        State.UNCONFIRMED: {State.SUCCEEDED, State.FAILED},
        State.SUCCEEDED: set(),
        State.FAILED: set(),
        State.REJECTED: set(),
        State.EXPIRED: set(),
        State.CANCELLED: set(),
    }
    INITIAL = State.PENDING
    FINAL = transitions.final(TRANSITIONS)
    # What waits for a person: the queue, its live updates and the navigation's count show these.
    NEEDS_A_PERSON = (State.PENDING, State.UNCONFIRMED)

    investigation = models.ForeignKey(Investigation, on_delete=models.PROTECT, related_name="action_requests")
    tool_use_id = models.CharField(max_length=100)
    tool = models.CharField(max_length=60)
    server = models.CharField(max_length=40)
    arguments = models.JSONField(help_text="As validated at the boundary.")
    target = models.CharField(max_length=200, help_text="What it acts on, for people: 'host=ws-fin-07'.")
    reason = models.TextField(blank=True, help_text="The agent's stated reason (untrusted text).")
    evidence = models.JSONField(default=list, blank=True, help_text="The transcript events the request rests on.")
    risk = models.JSONField(
        default=list, blank=True, help_text="Blast radius notes, e.g. 'host is a domain controller'."
    )
    idempotency_key = models.CharField(max_length=64)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING, db_index=True)
    approvals_needed = models.PositiveSmallIntegerField(default=1)
    expires_at = models.DateTimeField(db_index=True)
    result = models.JSONField(null=True, blank=True, help_text="The envelope the model receives.")
    outcome = models.CharField(max_length=300, blank=True, help_text="The result in a line, for people.")
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="While executing: when a stalled run may be retried."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ActionRequestQuerySet.as_manager()

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

    @property
    def arguments_text(self) -> str:
        """The arguments the write will be sent with, whole, as every place that asks for a decision
        shows them: the target alone hides a ticket's body or a comment's text."""
        return as_read(json.dumps(self.arguments, indent=2, ensure_ascii=False, sort_keys=True), keep="\n")

    @property
    def target_text(self) -> str:
        """The target as shown (a comment's holds its text): one line, read as it is sent (as_read)."""
        return as_read_line(self.target)

    @property
    def can_become(self) -> list[str]:
        """The states it can still reach from where it is (shown on its page)."""
        return transitions.reachable(self.TRANSITIONS, self.state)


class ActionApproval(models.Model):
    """One person's approval; four-eyes needs two rows from two different people."""

    request = models.ForeignKey(ActionRequest, on_delete=models.PROTECT, related_name="approvals")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField(blank=True)
    # Set by the decision to the moment it compared with the deadline (investigations.approvals.services).
    created_at = models.DateTimeField(default=timezone.now)
    # How the approver proved presence for it (investigations/presence.py): the factor and when; blank
    # when step-up was off.
    proof_factor = models.CharField(max_length=40, blank=True)
    proof_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request", "user"], name="approval_once_per_user")]

    def __str__(self) -> str:
        return f"approval of request {self.request_id} by user {self.user_id}"


class ActionTransition(models.Model):
    """Who moved a request from one state to another, when and why."""

    request = models.ForeignKey(ActionRequest, on_delete=models.PROTECT, related_name="transitions")
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20)
    actor = models.CharField(max_length=ACTOR_MAX, help_text="'agent', 'system' or 'user:<username>'.")
    reason = models.TextField(blank=True)
    # A decision's step is dated by the decision, with the moment it compared with the deadline
    # (investigations.approvals.services); auto_now_add would date it at the insert, later.
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"request {self.request_id}: {self.from_state or '-'} -> {self.to_state} by {self.actor}"


class ChannelDelivery(models.Model):
    """One approval channel telling of one change of one request, and how that went
    (investigations/approvals/channels/deliveries.py).

    One row per (request, channel, kind): a change is told once. `sent` only after the channel
    said it left; a failure is `failed` with its one-line reason and the time of the next try;
    `dropped` when it need not be sent any more (the request was decided first, nobody to tell).
    `next_attempt_at` is also the claim: a sweep moves it forward before it sends.
    """

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        DROPPED = "dropped"

    request = models.ForeignKey(ActionRequest, on_delete=models.PROTECT, related_name="deliveries")
    channel = models.CharField(max_length=40, help_text="The channel's registered name, e.g. 'email'.")
    kind = models.CharField(max_length=10, help_text="The change told: waiting, overdue, decided, finished.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(
        max_length=300, blank=True, help_text="Why the last try failed, in a line; no secrets."
    )
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="Null once sent, dropped or given up."
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request", "channel", "kind"], name="delivery_once_per_change"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.kind} of request {self.request_id} ({self.state})"
