from datetime import timedelta

from django.db import migrations, models

# Tokens made before expiry existed expire this long after they were made (the default lifetime).
EXISTING_TOKEN_DAYS = 90


def expire_existing(apps, schema_editor):
    ApiToken = apps.get_model("investigations", "ApiToken")
    for token in ApiToken.objects.filter(expires_at__isnull=True):
        token.expires_at = token.created_at + timedelta(days=EXISTING_TOKEN_DAYS)
        token.save(update_fields=["expires_at"])


class Migration(migrations.Migration):
    dependencies = [("investigations", "0009_audit_sign_in")]

    operations = [
        migrations.AddField(model_name="apitoken", name="expires_at", field=models.DateTimeField(null=True)),
        migrations.RunPython(expire_existing, migrations.RunPython.noop),
        migrations.AlterField(model_name="apitoken", name="expires_at", field=models.DateTimeField()),
    ]
