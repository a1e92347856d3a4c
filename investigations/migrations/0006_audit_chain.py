"""The audit trail becomes an append-only hash chain.

Existing records are linked in id order, then the database refuses changes: on PostgreSQL a
trigger refuses UPDATE and DELETE (TRUNCATE stays the owner's: restrict it with privileges); on
SQLite a trigger refuses UPDATE (Django's test flush deletes rows there). A trigram index serves
the free-text search on PostgreSQL when the pg_trgm extension can be created.
"""

from django.db import DatabaseError, migrations, models, transaction

GUARD_FUNCTION = "gatehouse_audit_append_only"
GUARD_TRIGGER = "audit_append_only"

POSTGRES_GUARD = f"""
CREATE OR REPLACE FUNCTION {GUARD_FUNCTION}() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER {GUARD_TRIGGER} BEFORE UPDATE OR DELETE ON investigations_auditrecord
    FOR EACH ROW EXECUTE FUNCTION {GUARD_FUNCTION}();
"""
POSTGRES_UNGUARD = f"""
DROP TRIGGER IF EXISTS {GUARD_TRIGGER} ON investigations_auditrecord;
DROP FUNCTION IF EXISTS {GUARD_FUNCTION}();
"""
SQLITE_GUARD = f"""
CREATE TRIGGER {GUARD_TRIGGER} BEFORE UPDATE ON investigations_auditrecord
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE refused'); END;
"""
SQLITE_UNGUARD = f"DROP TRIGGER IF EXISTS {GUARD_TRIGGER};"


def link_existing(apps, schema_editor):
    from investigations.audit.chain import GENESIS, content, link_hash, search_text

    AuditRecord = apps.get_model("investigations", "AuditRecord")
    AuditHead = apps.get_model("investigations", "AuditHead")
    seq, prev_hash = 0, GENESIS
    for record in AuditRecord.objects.order_by("id").iterator():
        seq += 1
        record.seq, record.prev_hash = seq, prev_hash
        record.latency_ms = round(float(record.latency_ms), 3)
        record.hash = link_hash(prev_hash, content(record))
        record.text = search_text(record)
        record.save(update_fields=["seq", "prev_hash", "hash", "text", "latency_ms"])
        prev_hash = record.hash
    AuditHead.objects.update_or_create(pk=1, defaults={"seq": seq, "hash": prev_hash})


def guard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_GUARD, params=None)  # its % is PL/pgSQL's, not a placeholder
        try:
            with transaction.atomic():  # a savepoint: without the privilege, only the index is skipped
                schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                schema_editor.execute(
                    "CREATE INDEX audit_text_trgm ON investigations_auditrecord USING gin (text gin_trgm_ops)"
                )
        except DatabaseError:  # no privilege or no pg_trgm: searches scan instead
            pass
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_GUARD)


def unguard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_UNGUARD)
        schema_editor.execute("DROP INDEX IF EXISTS audit_text_trgm")
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_UNGUARD)


class Migration(migrations.Migration):

    dependencies = [
        ("investigations", "0005_action_request_notified_at"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditHead",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("seq", models.BigIntegerField(default=0)),
                ("hash", models.CharField(default="0" * 64, max_length=64)),
            ],
        ),
        migrations.AddField(
            model_name="auditrecord",
            name="seq",
            field=models.BigIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="auditrecord",
            name="prev_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditrecord",
            name="hash",
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="auditrecord",
            name="text",
            field=models.TextField(blank=True, help_text="The visible fields, lower-cased, for the free-text search."),
        ),
        migrations.AddField(
            model_name="auditrecord",
            name="tool_use_id",
            field=models.CharField(blank=True, help_text="The model's id of the call it records.", max_length=64),
        ),
        migrations.AlterField(
            model_name="auditrecord",
            name="created_at",
            field=models.DateTimeField(db_index=True),
        ),
        migrations.AlterField(
            model_name="auditrecord",
            name="correlation_id",
            field=models.CharField(blank=True, max_length=64),
        ),
        migrations.AlterField(
            model_name="auditrecord",
            name="kind",
            field=models.CharField(
                choices=[("tool_call", "tool call"), ("decision", "approval decision"),
                         ("admin_change", "admin change"), ("access", "audit trail read")],
                default="tool_call",
                max_length=20,
            ),
        ),
        migrations.RunPython(link_existing, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditrecord",
            name="seq",
            field=models.BigIntegerField(help_text="Position in the hash chain, from 1, without gaps.", unique=True),
        ),
        migrations.AlterField(
            model_name="auditrecord",
            name="hash",
            field=models.CharField(max_length=64, unique=True),
        ),
        migrations.AlterModelOptions(
            name="auditrecord",
            options={"ordering": ["-seq"]},
        ),
        migrations.AddIndex(
            model_name="auditrecord",
            index=models.Index(fields=["correlation_id", "seq"], name="audit_correlation_seq"),
        ),
        migrations.AddIndex(
            model_name="auditrecord",
            index=models.Index(fields=["tool", "seq"], name="audit_tool_seq"),
        ),
        migrations.AddIndex(
            model_name="auditrecord",
            index=models.Index(fields=["server", "seq"], name="audit_server_seq"),
        ),
        migrations.AddIndex(
            model_name="auditrecord",
            index=models.Index(fields=["outcome", "seq"], name="audit_outcome_seq"),
        ),
        migrations.AddIndex(
            model_name="auditrecord",
            index=models.Index(fields=["actor", "seq"], name="audit_actor_seq"),
        ),
        migrations.AddIndex(
            model_name="auditrecord",
            index=models.Index(fields=["kind", "seq"], name="audit_kind_seq"),
        ),
        migrations.RunPython(guard, unguard),
    ]
