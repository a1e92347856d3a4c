"""The human gate: per-tool approval policies, the requests the agent makes, their approvals and history."""


from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from investigations.models.runs import Investigation


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


class ActionRequest(models.Model):
    """A privileged write the agent asked for, waiting for (or past) an analyst's decision.

        pending -> approved -> executing -> succeeded | failed
        executing -> unconfirmed -> succeeded | failed   (a person checked the backend and said)
        pending -> rejected | expired | cancelled

    `unconfirmed`: the write was sent once, its worker died before the answer was recorded, and the
    backend cannot say whether it took effect. It is not final: the investigation waits on it, and
    only a person allowed to approve the tool ends it (approvals.services.confirm_outcome).
    Each transition is one guarded update (investigations/approvals/services.py) and one ActionTransition.
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

    FINAL = (State.SUCCEEDED, State.FAILED, State.REJECTED, State.EXPIRED, State.CANCELLED)
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
    risk = models.JSONField(default=list, blank=True, help_text="Blast radius notes, e.g. 'host is a domain controller'.")
    idempotency_key = models.CharField(max_length=64)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING, db_index=True)
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
    # Set by the decision to the moment it compared with the deadline (investigations.approvals.services).
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request", "user"], name="approval_once_per_user")]


class ActionTransition(models.Model):
    """Who moved a request from one state to another, when and why."""

    request = models.ForeignKey(ActionRequest, on_delete=models.PROTECT, related_name="transitions")
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20)
    actor = models.CharField(max_length=150, help_text="'agent', 'system' or 'user:<username>'.")
    reason = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]
