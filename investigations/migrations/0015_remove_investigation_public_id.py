"""Investigation.public_id was never read: nothing linked, looked up or exported by it."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('investigations', '0014_channel_deliveries'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='investigation',
            name='public_id',
        ),
    ]
