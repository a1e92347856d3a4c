from django.db import migrations, models


def bind_existing(apps, schema_editor):
    """A credential set before binding is bound to where its server points now."""
    Credential = apps.get_model("toolserver", "Credential")
    for credential in Credential.objects.select_related("server"):
        credential.adapter, credential.url = credential.server.adapter, credential.server.url
        credential.save(update_fields=["adapter", "url"])


class Migration(migrations.Migration):
    dependencies = [("toolserver", "0002_admin_configuration")]

    operations = [
        migrations.AddField(
            model_name="credential",
            name="adapter",
            field=models.CharField(default="", help_text="The server's adapter when it was set.", max_length=40),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="credential",
            name="url",
            field=models.CharField(blank=True, help_text="The server's URL when it was set (blank: the deployment's).", max_length=500),
        ),
        migrations.RunPython(bind_existing, migrations.RunPython.noop),
    ]
