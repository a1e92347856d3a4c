"""The lab: a simulated SOC estate, its API keys, its injected faults and the writes it received.

The estate tables (Host to Indicator, and the tickets) are rebuilt by `manage.py seed_lab`;
keys survive a rebuild. Usernames and hostnames in logins and events are plain strings, as in
a real SIEM: they may name accounts or machines that the estate does not know.
"""

from django.db import models
from django.db.models import Q


class LabKey(models.Model):
    """A bearer key for /lab/api/. Only the SHA-256 of the key is kept, never the key."""

    name = models.CharField(max_length=60)
    key_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [
            # Re-issuing a key revokes the old one, so each name has at most one live key.
            models.UniqueConstraint(
                fields=["name"], condition=Q(revoked_at__isnull=True), name="lab_one_live_key_per_name"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"

    @property
    def fingerprint(self) -> str:
        return self.key_hash[:8]


class LabFault(models.Model):
    """The fault a backend currently injects; one row per backend, mode "none" when healthy."""

    backend = models.CharField(max_length=20, unique=True)
    mode = models.CharField(max_length=20, default="none")
    delay_ms = models.PositiveIntegerField(null=True, blank=True)
    retry_after_s = models.PositiveIntegerField(null=True, blank=True)
    remaining = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests left before it clears; null: until cleared."
    )
    applied = models.PositiveIntegerField(default=0, help_text="Requests it has applied to since it was set.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["backend"]

    def __str__(self) -> str:
        return f"{self.backend}: {self.mode}"


class LabWrite(models.Model):
    """Every POST write the lab received, whatever became of it (outcome)."""

    class Outcome(models.TextChoices):
        PERFORMED = "performed"  # the write changed the estate
        REPLAYED = "replayed"  # a repeated Idempotency-Key: the first answer again, nothing changed
        ALREADY = "already"  # the target was already in the asked state: nothing changed
        FAULT = "fault"  # refused by an injected fault: nothing changed
        REJECTED = "rejected"  # unauthorised, forbidden, bad request or unknown target

    backend = models.CharField(max_length=20)
    action = models.CharField(max_length=40)
    target = models.CharField(max_length=200, blank=True)
    key_name = models.CharField(max_length=60, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    payload = models.JSONField(null=True, blank=True)
    status = models.PositiveSmallIntegerField()
    response = models.JSONField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["backend", "outcome"])]
        constraints = [
            # The race guard behind Idempotency-Key: one answered write per key and backend.
            models.UniqueConstraint(
                fields=["backend", "idempotency_key"],
                condition=Q(outcome__in=["performed", "already"]) & ~Q(idempotency_key=""),
                name="lab_one_answer_per_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target} ({self.outcome})"


# The estate ---------------------------------------------------------------------------


class Host(models.Model):
    ROLES = ["workstation", "server", "domain_controller"]
    CRITICALITIES = ["low", "medium", "high", "critical"]

    host_id = models.CharField(max_length=20, unique=True)
    hostname = models.CharField(max_length=63, unique=True)
    os = models.CharField(max_length=60)
    role = models.CharField(max_length=20)
    owner = models.CharField(max_length=60)
    ip = models.GenericIPAddressField()
    criticality = models.CharField(max_length=10)
    isolated = models.BooleanField(default=False)
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["host_id"]

    def __str__(self) -> str:
        return self.hostname


class Account(models.Model):
    """A directory account (the identity backend's user)."""

    username = models.CharField(max_length=64, unique=True)
    display_name = models.CharField(max_length=100)
    email = models.EmailField()
    department = models.CharField(max_length=40)
    title = models.CharField(max_length=80)
    privileged = models.BooleanField(default=False)
    disabled = models.BooleanField(default=False)
    mfa = models.BooleanField(default=True)
    last_login = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["username"]

    def __str__(self) -> str:
        return self.username


class Login(models.Model):
    at = models.DateTimeField(db_index=True)
    username = models.CharField(max_length=64, db_index=True)
    hostname = models.CharField(max_length=63, db_index=True)
    source_ip = models.GenericIPAddressField()
    source_country = models.CharField(max_length=2)
    result = models.CharField(max_length=10)
    method = models.CharField(max_length=30)

    def __str__(self) -> str:
        return f"{self.username} on {self.hostname}: {self.result}"


class SiemEvent(models.Model):
    at = models.DateTimeField(db_index=True)
    kind = models.CharField(max_length=30)
    hostname = models.CharField(max_length=63, blank=True, db_index=True)
    username = models.CharField(max_length=64, blank=True, db_index=True)
    summary = models.TextField()

    def __str__(self) -> str:
        return f"{self.kind}: {self.summary[:80]}"


class ProcessEvent(models.Model):
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="processes")
    at = models.DateTimeField()
    pid = models.PositiveIntegerField()
    ppid = models.PositiveIntegerField()
    image = models.CharField(max_length=260)
    command_line = models.TextField()
    username = models.CharField(max_length=64, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        indexes = [models.Index(fields=["host", "at"])]

    def __str__(self) -> str:
        return f"{self.image} (pid {self.pid})"


class NetworkEvent(models.Model):
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="connections")
    at = models.DateTimeField()
    pid = models.PositiveIntegerField()
    image = models.CharField(max_length=260)
    remote_ip = models.GenericIPAddressField()
    remote_domain = models.CharField(max_length=253, blank=True)
    remote_port = models.PositiveIntegerField()
    bytes_out = models.PositiveBigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["host", "at"])]

    def __str__(self) -> str:
        return f"{self.image} -> {self.remote_domain or self.remote_ip}:{self.remote_port}"


class Indicator(models.Model):
    KINDS = ["hash", "ip", "domain"]
    VERDICTS = ["malicious", "suspicious", "benign", "unknown"]

    kind = models.CharField(max_length=10)
    value = models.CharField(max_length=253)
    verdict = models.CharField(max_length=12)
    confidence = models.PositiveSmallIntegerField()
    tags = models.JSONField(default=list)
    first_seen = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=60)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="lab_one_indicator_per_value")]

    def __str__(self) -> str:
        return f"{self.kind} {self.value} ({self.verdict})"


class Ticket(models.Model):
    SEVERITIES = ["low", "medium", "high", "critical"]
    FIRST_NUMBER = 4471

    number = models.PositiveIntegerField(unique=True)
    title = models.CharField(max_length=200)
    body = models.TextField()
    severity = models.CharField(max_length=10)
    alert_ref = models.CharField(max_length=200, blank=True)
    created_by = models.CharField(max_length=60, help_text="The name of the key that opened it.")
    created_at = models.DateTimeField(auto_now_add=True)
    # As a real ticketing system's custom field would: the write's Idempotency-Key, kept whether or not the
    # backend deduplicates on it, so a caller can ask whether its write already happened (tickets/search).
    idempotency_key = models.CharField(max_length=200, blank=True, db_index=True)

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"#{self.number} {self.title}"


class TicketComment(models.Model):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="comments")
    body = models.TextField()
    created_by = models.CharField(max_length=60)
    created_at = models.DateTimeField(auto_now_add=True)
    idempotency_key = models.CharField(max_length=200, blank=True, db_index=True)  # as on Ticket

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"comment on ticket {self.ticket_id} by {self.created_by}"


class LabEstate(models.Model):
    """When the estate was last built, and from which seed: the story timestamps hang off it."""

    seed = models.IntegerField()
    seeded_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"estate seed {self.seed} at {self.seeded_at:%Y-%m-%d %H:%M}"
