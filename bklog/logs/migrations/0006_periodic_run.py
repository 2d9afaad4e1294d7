# Beat's periodic runs, claimed in the database: one beat at a time sends each (bklog/beat.py).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('logs', '0005_export_heartbeat'),
    ]

    operations = [
        migrations.CreateModel(
            name='PeriodicRun',
            fields=[
                ('name', models.CharField(max_length=200, primary_key=True, serialize=False)),
                ('last_run_at', models.DateTimeField()),
                ('host', models.CharField(max_length=255)),
                ('runs', models.PositiveBigIntegerField(default=0)),
            ],
        ),
    ]
