"""The chain's head moves only forward, to a record's hash, and carries the console's seal.

A role with only DML rights (the runtime role) could UPDATE the head: append a record that links
and move the head onto it, and verify said intact. Now the database refuses any other move of the
head (a trigger; on SQLite for UPDATE, as Django's test flush deletes rows there), and the head
carries an HMAC only the console's key makes (investigations.audit.chain.seal): the database cannot tell
the runtime role's INSERT from the console's, the seal can.
"""

from django.db import migrations, models

FUNCTION = "gatehouse_audit_head_forward_only"
TRIGGER = "audit_head_forward_only"
REFUSED = "the audit head moves only forward, to the hash of a record with that seq"
# A move is refused when it goes back, changes the hash in place or lands on no record.
BAD_MOVE = """NEW.id <> OLD.id OR NEW.seq < OLD.seq OR (NEW.seq = OLD.seq AND NEW.hash <> OLD.hash)
    OR (NEW.seq > OLD.seq AND NOT EXISTS (
        SELECT 1 FROM investigations_auditrecord WHERE seq = NEW.seq AND hash = NEW.hash))"""

POSTGRES_GUARD = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'the audit head is never removed' USING ERRCODE = 'insufficient_privilege';
    ELSIF TG_OP = 'INSERT' THEN
        IF NEW.seq <> 0 OR NEW.hash <> repeat('0', 64) THEN
            RAISE EXCEPTION 'a new audit head starts at the genesis' USING ERRCODE = 'insufficient_privilege';
        END IF;
    ELSIF {BAD_MOVE} THEN
        RAISE EXCEPTION '{REFUSED}: #% refused', NEW.seq USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER {TRIGGER} BEFORE INSERT OR UPDATE OR DELETE ON investigations_audithead
    FOR EACH ROW EXECUTE FUNCTION {FUNCTION}();
"""
POSTGRES_UNGUARD = f"DROP TRIGGER IF EXISTS {TRIGGER} ON investigations_audithead; DROP FUNCTION IF EXISTS {FUNCTION}();"
SQLITE_GUARD = f"""
CREATE TRIGGER {TRIGGER} BEFORE UPDATE ON investigations_audithead WHEN {BAD_MOVE}
BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END;
"""
SQLITE_UNGUARD = f"DROP TRIGGER IF EXISTS {TRIGGER};"


def seal_head(apps, schema_editor):
    from investigations.audit.chain import seal

    AuditHead = apps.get_model("investigations", "AuditHead")
    for head in AuditHead.objects.all():
        AuditHead.objects.filter(pk=head.pk).update(seal=seal(head.seq, head.hash))


def guard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_GUARD, params=None)  # its % is PL/pgSQL's, not a placeholder
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_GUARD)


def unguard(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_UNGUARD)
    elif vendor == "sqlite":
        schema_editor.execute(SQLITE_UNGUARD)


class Migration(migrations.Migration):
    dependencies = [("investigations", "0011_approval_time_is_the_decisions")]

    operations = [
        migrations.AddField(model_name="audithead", name="seal", field=models.CharField(blank=True, max_length=64)),
        migrations.RunPython(seal_head, migrations.RunPython.noop),
        migrations.RunPython(guard, unguard),
    ]
