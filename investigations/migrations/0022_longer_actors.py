"""An actor names up to two usernames of Django's 150 characters ("user:<a>,<b>", a four-eyes write's
approvers): the trail's and the history's actor columns widen to 320.

On PostgreSQL only: SQLite does not enforce a varchar's length, and Django's AlterField rebuilds a table
there, which would drop the audit trail's append-only trigger with it.
"""

from django.db import migrations, models

TABLES = ("investigations_auditrecord", "investigations_actiontransition")


def _sized(length: int):
    def alter(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for table in TABLES:
                schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN actor TYPE varchar({length})")

    return alter


class Migration(migrations.Migration):
    dependencies = [("investigations", "0021_approval_proof_decide_tokens")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(_sized(320), _sized(150))],
            state_operations=[
                migrations.AlterField(
                    model_name="actiontransition",
                    name="actor",
                    field=models.CharField(help_text="'agent', 'system' or 'user:<username>'.", max_length=320),
                ),
                migrations.AlterField(
                    model_name="auditrecord",
                    name="actor",
                    field=models.CharField(max_length=320),
                ),
            ],
        )
    ]
