"""Investigation.public_id was never read: nothing linked, looked up or exported by it."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('investigations', '0013_notify_claim'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='investigation',
            name='public_id',
        ),
    ]
