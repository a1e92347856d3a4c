"""Each integration sends only its own sources; an alert is unique per integration.

Existing integrations keep working: each is given its own name and every source it has already
sent, as long as no other live integration sent that source too (an integration named after a
source keeps it). A source two live integrations both sent is given to neither: one of them may
have been sending another system's ids, and an admin decides (`manage.py integrations list`
shows each one's sources; `integrations sources NAME SOURCE...` sets them). Revoked integrations
send nothing and are given their own name only.
"""

import re
from collections import defaultdict

from django.db import migrations, models

SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/#-]{0,63}")  # intake.AlertIn's source, as of this migration
CONSOLE_SOURCE = "console"


def give_sources(apps, schema_editor):
    Integration = apps.get_model("investigations", "Integration")
    Alert = apps.get_model("investigations", "Alert")
    integrations = list(Integration.objects.all())
    sent = defaultdict(set)
    for integration_id, source in Alert.objects.filter(integration__isnull=False).values_list("integration_id", "source").distinct():
        sent[integration_id].add(source)
    claimants = defaultdict(set)  # source -> the live integrations that sent it or are named after it
    for integration in integrations:
        if integration.revoked_at is None:
            for source in sent[integration.pk] | {integration.name}:
                claimants[source].add(integration.pk)
    for integration in integrations:
        mine = {integration.name}
        if integration.revoked_at is None:
            mine |= {source for source in sent[integration.pk] if claimants[source] == {integration.pk}}
        integration.sources = sorted(
            source for source in mine if SOURCE.fullmatch(source) and source != CONSOLE_SOURCE
        )
        integration.save(update_fields=["sources"])


class Migration(migrations.Migration):

    dependencies = [
        ('investigations', '0007_budgets'),
    ]

    operations = [
        migrations.AddField(
            model_name='integration',
            name='sources',
            field=models.JSONField(blank=True, default=list, help_text='The alert sources it may send.'),
        ),
        migrations.RunPython(give_sources, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name='alert',
            name='alert_unique_source_external_id',
        ),
        migrations.AddConstraint(
            model_name='alert',
            constraint=models.UniqueConstraint(condition=models.Q(('integration__isnull', False)), fields=('integration', 'source', 'external_id'), name='alert_unique_per_integration'),
        ),
        migrations.AddConstraint(
            model_name='alert',
            constraint=models.UniqueConstraint(condition=models.Q(('integration__isnull', True)), fields=('source', 'external_id'), name='alert_unique_without_integration'),
        ),
        migrations.AlterField(
            model_name='auditrecord',
            name='kind',
            field=models.CharField(choices=[('tool_call', 'tool call'), ('decision', 'approval decision'), ('admin_change', 'admin change'), ('access', 'audit trail read'), ('intake', 'alert refused')], default='tool_call', max_length=20),
        ),
    ]
