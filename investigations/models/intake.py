"""What comes in: the integrations that send alerts, and the alerts."""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper


class Integration(models.Model):
    """A system allowed to POST alerts (a SIEM webhook). Its token is shown once and kept only as a hash.

    It may send alerts only of its `sources` (set with `manage.py integrations sources`): a source
    belongs to one live integration, so no integration can speak for another system. Its
    `severity_map` (`manage.py integrations severity`) overrides how the formats of
    POST /api/alerts/{format} turn a sender's severity into ours (investigations/intake/formats/).

    Grouping (`manage.py integrations grouping`): an alert whose key (`group_by`: its rule and host,
    or its rule and user) matches an open investigation of this integration started within
    `group_window_minutes` joins it as a related alert instead of starting another. At most
    `starts_per_minute` of its investigations are handed to workers a minute (`manage.py integrations
    cap`); the rest wait queued, held, and start as the minute allows (investigations/intake/services.py).
    """

    class GroupBy(models.TextChoices):
        RULE_HOST = "rule+host", "rule and host"
        RULE_USER = "rule+user", "rule and user"
        NONE = "none", "no grouping"

    name = models.CharField(max_length=80, unique=True)
    sources = models.JSONField(default=list, blank=True, help_text="The alert sources it may send.")
    severity_map = models.JSONField(
        default=dict,
        blank=True,
        help_text='How its senders\' severities become ours: "FORMAT:VALUE" or "default" -> low, medium, high or critical.',
    )
    group_by = models.CharField(max_length=10, choices=GroupBy.choices, default=GroupBy.RULE_HOST)
    group_window_minutes = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1)])
    starts_per_minute = models.PositiveIntegerField(
        default=20, validators=[MinValueValidator(1)], help_text="Investigations handed to workers per minute, at most."
    )
    token_prefix = models.CharField(max_length=16, help_text="The token's first characters, to tell tokens apart.")
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


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
    rule = models.CharField(
        max_length=300, blank=True, help_text="What fired it, stable across its alerts: the sender's rule or search."
    )
    severity = models.CharField(max_length=10, choices=Severity.choices)
    host = models.CharField(max_length=64, blank=True)
    account = models.CharField(max_length=64, blank=True, help_text="The user the alert names.")
    observed_at = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    integration = models.ForeignKey(Integration, null=True, blank=True, on_delete=models.PROTECT, related_name="alerts")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Its integration's grouping key ("" when it has none), and the open investigation of that key
    # it joined instead of starting its own (None: it started one, or came in the console).
    group_key = models.CharField(max_length=400, blank=True)
    joined = models.ForeignKey(
        "investigations.Investigation", null=True, blank=True, on_delete=models.PROTECT, related_name="related_alerts"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        # The investigations list's filters (investigations/runs/selectors.py): host and user match in
        # any case, so theirs are on UPPER(), the expression Django's iexact compares on PostgreSQL.
        indexes = [
            models.Index(Upper("host"), name="alert_host_upper"),
            models.Index(Upper("account"), name="alert_account_upper"),
            models.Index(fields=["source"], name="alert_source"),
            models.Index(fields=["severity"], name="alert_severity"),
            models.Index(fields=["observed_at"], name="alert_observed_at"),
            # Grouping (investigations/intake/services.py): the open investigation of an alert's key.
            models.Index(fields=["integration", "group_key"], name="alert_group_key"),
        ]
        constraints = [
            # An alert is the same alert only from the same integration: another one sending its
            # ids first cannot make it a repeat. Alerts typed in the console have no integration.
            models.UniqueConstraint(
                fields=["integration", "source", "external_id"],
                condition=Q(integration__isnull=False),
                name="alert_unique_per_integration",
            ),
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=Q(integration__isnull=True),
                name="alert_unique_without_integration",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id}"

    @property
    def trigger(self) -> str:
        """What a write's idempotency key names as its cause (architecture rule 6)."""
        return f"{self.source}:{self.external_id}"
