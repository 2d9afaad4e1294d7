# An export says who runs it and when it last did: a job whose process died is failed, not left
# running for ever. worker has a database default: a release before this one inserts jobs without it.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('logs', '0004_line_ids'),
    ]

    operations = [
        migrations.AddField(
            model_name='exportjob',
            name='heartbeat_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='exportjob',
            name='worker',
            field=models.CharField(blank=True, db_default='', default='', max_length=100),
        ),
    ]
