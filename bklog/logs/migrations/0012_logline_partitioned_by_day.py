"""PostgreSQL: logs_logline partitioned by day (bklog/logs/partitions.py, issue 18). An empty
table (a new installation) is partitioned here; one with lines by `bklog partition_lines`, which
the deploy runs once every host runs this release (online; docs/upgrades.md). SQLite: nothing."""

from django.db import migrations


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM logs_logline)")
        if cursor.fetchone()[0]:
            return
    from bklog.logs import partitions  # noqa: PLC0415

    partitions.convert()


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY
    dependencies = [("logs", "0011_logline_search_vector")]
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
