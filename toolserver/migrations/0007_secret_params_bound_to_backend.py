from django.db import migrations, models

from toolserver.models import ToolServer


def bind_to_where_they_point(apps, schema_editor):
    """Secret parameters were set for where their server points now (every recorded change of it cleared them):
    they keep working, now bound there. The live model's pointed_at() makes the digest binding_of compares."""
    HistoricalToolServer = apps.get_model("toolserver", "ToolServer")
    for row in HistoricalToolServer.objects.exclude(secret_params={}):
        where = ToolServer(**{field: getattr(row, field) for field in ("kind", "adapter", "url", *ToolServer.LAUNCH_FIELDS)})
        row.secret_params_for = where.pointed_at()
        row.save(update_fields=["secret_params_for"])


class Migration(migrations.Migration):
    """An adapter's secret parameters are bound to where their server pointed when they were set, as its credential
    is: a server pointed elsewhere by any path starts without them."""

    dependencies = [("toolserver", "0006_credential_launch")]

    operations = [
        migrations.AddField(
            model_name="toolserver",
            name="secret_params_for",
            field=models.CharField(
                blank=True,
                editable=False,
                help_text="Where the server pointed when its secret parameters were set (ToolServer.pointed_at).",
                max_length=64,
            ),
        ),
        migrations.RunPython(bind_to_where_they_point, migrations.RunPython.noop),
    ]
