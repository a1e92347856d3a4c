from django.db import models


class IdempotencyRecord(models.Model):
    """One privileged write, by its key: claimed before the backend is called, kept after.

    The unique key is the race guard: of many concurrent claims exactly one INSERT succeeds.
    """

    class State(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # permanently: returned again, never retried under this key

    key = models.CharField(max_length=64, unique=True)
    server = models.CharField(max_length=40)
    tool = models.CharField(max_length=60)
    target = models.CharField(max_length=300)
    trigger = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64, help_text="Hash of the arguments that must match on a repeat.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    claim_token = models.CharField(max_length=32)
    lease_until = models.DateTimeField(help_text="A running claim older than this was abandoned by its worker.")
    attempts = models.PositiveIntegerField(default=1)
    result = models.JSONField(null=True, blank=True)
    claimed_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["trigger"])]

    def __str__(self) -> str:
        return f"{self.tool} {self.target} for {self.trigger} ({self.state})"
