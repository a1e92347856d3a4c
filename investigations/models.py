from django.db import models


class AuditRecord(models.Model):
    """One tool call (or, later, one approval decision or admin change), as evidence.

    Written by investigations.audit.record_tool_call from what the tool layer emits; sensitive
    argument values arrive already replaced by keyed hashes.
    """

    class Kind(models.TextChoices):
        TOOL_CALL = "tool_call"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.TOOL_CALL)
    server = models.CharField(max_length=40, blank=True)
    tool = models.CharField(max_length=60, blank=True)
    arguments = models.JSONField(default=dict)
    outcome = models.CharField(max_length=20)
    reason = models.CharField(max_length=60, blank=True)
    idempotency_key = models.CharField(max_length=64, blank=True, db_index=True)
    backend_status = models.CharField(max_length=20, blank=True)
    latency_ms = models.FloatField(default=0)
    correlation_id = models.CharField(max_length=64, blank=True, db_index=True)
    actor = models.CharField(max_length=150)
    source = models.CharField(max_length=60, blank=True)
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.tool} {self.outcome}"
