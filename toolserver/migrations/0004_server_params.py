from django.db import migrations, models


class Migration(migrations.Migration):
    """The parameters an adapter declares (toolserver.adapters.base.Param): plain ones by value,
    secret ones each sealed like a credential."""

    dependencies = [("toolserver", "0003_credential_bound_to_backend")]

    operations = [
        migrations.AddField(
            model_name="toolserver",
            name="params",
            field=models.JSONField(blank=True, default=dict, help_text="{name: value} of the adapter's plain parameters."),
        ),
        migrations.AddField(
            model_name="toolserver",
            name="secret_params",
            field=models.JSONField(
                blank=True, default=dict, editable=False, help_text="{name: Fernet token} of the adapter's secret parameters."
            ),
        ),
    ]
