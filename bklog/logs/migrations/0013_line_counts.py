"""Lines per index set and minute (logs_linecount), kept by triggers on logs_logline
(bklog/logs/line_counts.py): the histogram of every line reads them (issue 18).

Both releases write lines during a rolling upgrade: the triggers count whichever wrote. The lines
stored before are counted here, in this migration's transaction: creating the triggers locks the
lines' table against writes until it commits (a few seconds at 10 M lines: ingest waits, search
goes on), so that no line is counted twice or missed."""

from django.db import migrations, models


def forward(apps, schema_editor):
    from bklog.logs import line_counts  # noqa: PLC0415

    with schema_editor.connection.cursor() as cursor:
        line_counts.install(cursor)


def backward(apps, schema_editor):
    from bklog.logs import line_counts  # noqa: PLC0415

    with schema_editor.connection.cursor() as cursor:
        line_counts.uninstall(cursor)


class Migration(migrations.Migration):
    dependencies = [("logs", "0012_logline_partitioned_by_day")]
    operations = [
        migrations.CreateModel(
            name="LineCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("minute", models.BigIntegerField()),
                ("writer", models.BigIntegerField(default=0)),
                ("lines", models.BigIntegerField()),
                ("index_set", models.ForeignKey(db_constraint=False, on_delete=models.deletion.CASCADE,
                                                related_name="+", to="logs.indexset")),
            ],
            options={"constraints": [models.UniqueConstraint(fields=("index_set", "minute", "writer"),
                                                             name="linecount_minute_writer")]},
        ),
        migrations.RunPython(forward, backward),
    ]
