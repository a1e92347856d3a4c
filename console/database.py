"""Two PostgreSQL roles: the owner that migrates, and the runtime role the console, workers and beat use.

The audit chain's append-only guard is a trigger; whoever owns the table can disable it, TRUNCATE
the table or drop it. So the processes that serve people and run the model connect as a role that
owns nothing: it may read and write the application's tables, only read and append to the audit
trail, and never TRUNCATE anything. `grant_runtime_role()` gives it exactly that after every
migrate run with GATEHOUSE_DB_RUNTIME_ROLE set (the owner runs it: only an owner can grant).
The deploy check W001 warns when the console runs as the owner of the audit table.
"""

from django.conf import settings
from django.core import checks
from django.db import connection

AUDIT_TABLE = "investigations_auditrecord"
# Tables the runtime role may read and append to, never change.
APPEND_ONLY = (AUDIT_TABLE,)


def grant_runtime_role(role: str, using=connection) -> None:
    """Grant `role` what the running console needs, and no more, on every table of this schema."""
    quote = using.ops.quote_name
    with using.cursor() as cursor:
        tables = using.introspection.table_names(cursor)
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {quote(role)}")
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quote(role)}")
        for table in tables:
            cursor.execute(f"REVOKE ALL ON {quote(table)} FROM {quote(role)}")
            rights = "SELECT, INSERT" if table in APPEND_ONLY else "SELECT, INSERT, UPDATE, DELETE"
            cursor.execute(f"GRANT {rights} ON {quote(table)} TO {quote(role)}")


def after_migrate(sender, using="default", **kwargs) -> None:
    """post_migrate: keep the runtime role's rights in step with the tables (new tables included)."""
    from django.db import connections

    role = settings.DB_RUNTIME_ROLE
    if role and sender.label == "console" and connections[using].vendor == "postgresql":
        grant_runtime_role(role, connections[using])


@checks.register(checks.Tags.security, deploy=True)
def runtime_role_owns_nothing(app_configs=None, **kwargs):
    """W001: the console connects as the owner of the audit table (or a superuser), who can undo its guard."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableowner = current_user OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
            "FROM pg_tables WHERE tablename = %s",
            [AUDIT_TABLE],
        )
        row = cursor.fetchone()
    if row and row[0]:
        return [
            checks.Warning(
                "The console connects to PostgreSQL as the owner of the audit table (or a superuser), who can "
                "disable its append-only trigger or TRUNCATE it.",
                hint="Migrate as the owner with GATEHOUSE_DB_RUNTIME_ROLE set, and run the console, workers and "
                "beat with a DATABASE_URL of that runtime role (README, 'Running in production').",
                id="gatehouse.W001",
            )
        ]
    return []
