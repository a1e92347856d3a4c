"""The role the console runs as cannot undo the audit trail's guard (issue 14 item 2).

Before, the console connected as the owner of the audit table: TRUNCATE, and ALTER TABLE … DISABLE
TRIGGER followed by UPDATE, all succeeded for it. Now migrations run as the owner and grant a runtime
role only what the running console needs.
"""

import psycopg
import pytest
from django.db import connection

from console.database import grant_runtime_role
from investigations.audit import chain as audit
from investigations.models import AuditRecord
from tests.support import console_env, database_url_of, run_manage

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]
ROLE = "gatehouse_runtime_test"

UNDOING_THE_GUARD = [
    "TRUNCATE investigations_auditrecord",
    "ALTER TABLE investigations_auditrecord DISABLE TRIGGER audit_append_only",
    "UPDATE investigations_auditrecord SET outcome = 'forged'",
    "DELETE FROM investigations_auditrecord",
    "DROP TABLE investigations_auditrecord",
    "TRUNCATE investigations_investigation CASCADE",
]


@pytest.fixture
def runtime_role():
    with connection.cursor() as cursor:
        cursor.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') "
            f"THEN CREATE ROLE {ROLE} LOGIN; END IF; END $$"
        )
    grant_runtime_role(ROLE)
    yield ROLE
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {ROLE}")
        cursor.execute(f"DROP ROLE {ROLE}")


def as_role(role: str) -> psycopg.Connection:
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], dbname=settings["NAME"], user=role, autocommit=True
    )


def test_the_runtime_role_appends_to_the_trail_but_cannot_truncate_disable_or_rewrite_it(runtime_role):
    audit.record_admin_change("user:ada", "budgets_changed", before={"tool_calls": 30}, after={"tool_calls": 10})
    with as_role(runtime_role) as conn:
        for statement in UNDOING_THE_GUARD:
            with pytest.raises(psycopg.Error) as caught:
                conn.execute(statement)
            assert "permission denied" in str(caught.value) or "must be owner" in str(caught.value), statement
        # What the running console needs still works: read the trail, change its own tables.
        assert conn.execute("SELECT count(*) FROM investigations_auditrecord").fetchone() == (1,)
        assert conn.execute("UPDATE toolserver_toolserver SET enabled = enabled").rowcount == 6
        conn.execute("UPDATE investigations_audithead SET seq = seq")
    assert list(AuditRecord.objects.values_list("outcome", flat=True)) == ["budgets_changed"]


def test_check_deploy_warns_when_the_console_runs_as_the_owner_and_not_as_the_runtime_role(runtime_role):
    url = database_url_of(connection.settings_dict)
    as_owner = run_manage("check", "--deploy", env=console_env(DATABASE_URL=url))
    assert "gatehouse.W001" in as_owner.stderr + as_owner.stdout
    user = connection.settings_dict["USER"]
    as_runtime = run_manage(
        "check", "--deploy", env=console_env(DATABASE_URL=url.replace(f"//{user}@", f"//{runtime_role}@"))
    )
    assert as_runtime.returncode == 0, as_runtime.stderr
    assert "gatehouse.W001" not in as_runtime.stderr + as_runtime.stdout


def test_the_runtime_role_cannot_move_the_head_to_a_forged_append(runtime_role):
    """Issue 13 item 11: INSERT a record that links, UPDATE the head to it; verify said intact."""
    from tests.investigations.test_audit import INSERT_RECORD, verify

    (last,) = [audit.record_admin_change("user:ada", "budgets_changed", before={}, after={})]
    forged = AuditRecord(
        seq=2,
        prev_hash=last.hash,
        created_at=last.created_at,
        kind="tool_call",
        tool="isolate_host",
        outcome="ok",
        actor="agent",
        arguments={},
        extra={},
    )
    forged.hash = audit.link_hash(forged.prev_hash, audit.content(forged))
    with as_role(runtime_role) as conn:
        conn.execute(INSERT_RECORD, [forged.seq, forged.prev_hash, forged.hash, forged.created_at])
        with pytest.raises(psycopg.Error, match="audit head"):
            conn.execute("UPDATE investigations_audithead SET seq = 1, hash = %s", ["f" * 64])  # nowhere
        conn.execute("UPDATE investigations_audithead SET seq = 2, hash = %s", [forged.hash])  # a record, forward
    status, _, err = verify()
    assert status == 1 and "the chain head #2 was not moved by the chain's writer" in err
