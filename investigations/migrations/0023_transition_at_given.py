"""A request's history step takes its time from the move it records (a decision's: the moment it compared
with the deadline), the clock's only when none is given: `at` defaults to timezone.now, no longer auto_now_add.

State only: both are set by Django, not the database, so no column changes (and on SQLite an AlterField would
rebuild the table for nothing).
"""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("investigations", "0022_longer_actors")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="actiontransition",
                    name="at",
                    field=models.DateTimeField(default=django.utils.timezone.now),
                ),
            ],
        )
    ]
