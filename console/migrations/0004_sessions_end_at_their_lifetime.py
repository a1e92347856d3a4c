"""Every session signed in before this release ends: a sign-in now lasts GATEHOUSE_SESSION_SECONDS from the
sign-in (console.signin.logged_in fixes its expiry then), but a session made before has no such moment, and each
save of it (the idle timeout's, once a minute of use) moved its expiry on: a cookie used now and then never
expired. When it was signed in is not kept, so it cannot be given its end: it ends now, and its person signs in again.
"""

from django.db import migrations


def end_every_session(apps, schema_editor):
    apps.get_model("sessions", "Session").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("console", "0003_sso_identities"), ("sessions", "0001_initial")]

    operations = [migrations.RunPython(end_every_session, migrations.RunPython.noop)]
