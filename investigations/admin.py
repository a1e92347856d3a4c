"""The Django admin: integrations (browse, with their sources, and revoke), alerts and investigations (browse only).

AuditRecord is read-only here; Event stays out. Evidence is never edited.
"""

from django.contrib import admin, messages
from django.utils import timezone

from investigations.audit import chain as audit
from investigations.models import Alert, AuditRecord, Integration, Investigation


class AuditedAdmin(admin.ModelAdmin):
    """Every change made in the Django admin is one admin_change record in the chain, as the console's
    own pages' are (architecture rule 11): Django's LogEntry alone is a table anyone with rights can edit."""

    def log_addition(self, request, obj, message):
        self._record(request, "added", [obj], message)
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        self._record(request, "changed", [obj], message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        self._record(request, "deleted", list(queryset), "")
        return super().log_deletions(request, queryset)

    def _record(self, request, what: str, objects, message) -> None:
        audit.record_admin_change(
            f"user:{request.user.get_username()}",
            f"django_admin_{what}",
            before={},
            after={
                "model": self.opts.label_lower,
                "objects": [str(obj) for obj in objects],
                "change": str(message or ""),
            },
        )


@admin.register(Integration)
class IntegrationAdmin(AuditedAdmin):
    list_display = ("name", "sources", "token_prefix", "created_at", "last_used_at", "revoked_at")
    search_fields = ("name", "token_prefix")
    fields = (
        "name",
        "sources",
        "group_by",
        "group_window_minutes",
        "starts_per_minute",
        "token_prefix",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )  # not the hash
    # Sources, grouping and the start cap change only through `manage.py integrations`, which audits the change.
    readonly_fields = fields
    actions = ["revoke"]

    # Tokens are made by `manage.py integrations create`, so the plaintext is shown once on a
    # terminal, never in a page. An integration is revoked, not deleted: its alerts refer to it.
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke selected integrations", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = list(queryset.filter(revoked_at__isnull=True))
        count = queryset.filter(pk__in=[row.pk for row in revoked]).update(revoked_at=timezone.now())
        self._record(request, "changed", revoked, "revoked")
        self.message_user(
            request, f"Revoked {count} integration(s); their tokens are refused from now on.", messages.SUCCESS
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Browse only: alerts come in through intake, investigations change through their services."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("id", "source", "external_id", "title", "severity", "host", "account", "observed_at", "received_at")
    list_filter = ("severity", "source")
    search_fields = ("source", "external_id", "title", "host", "account")
    date_hierarchy = "received_at"


@admin.register(Investigation)
class InvestigationAdmin(ReadOnlyAdmin):
    list_display = ("id", "alert", "status", "verdict", "model", "created_at", "finished_at")
    list_filter = ("status", "verdict")
    list_select_related = ("alert",)
    search_fields = ("alert__source", "alert__external_id", "alert__title")
    date_hierarchy = "created_at"


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    """The audit pages are the managers' view; this one is for admins used to the admin."""

    list_display = ("seq", "created_at", "kind", "server", "tool", "outcome", "reason", "actor", "correlation_id")
    list_filter = ("kind", "outcome", "server", "tool")
    search_fields = ("text",)
    show_full_result_count = False
    list_per_page = 50  # as the audit pages
