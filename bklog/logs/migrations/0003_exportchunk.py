"""Finished export files move into the database (ExportChunk): a fleet's export worker and the
API host serving the download are different machines. Jobs finished before this migration keep
their file on the worker's disk and are served from there while it lasts."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("logs", "0002_fulltext_index")]

    operations = [
        migrations.CreateModel(
            name="ExportChunk",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("seq", models.PositiveIntegerField()),
                ("data", models.BinaryField()),
                ("job", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="chunks",
                                          to="logs.exportjob")),
            ],
            options={
                "constraints": [models.UniqueConstraint(fields=("job", "seq"), name="exportchunk_job_seq")],
            },
        ),
    ]
