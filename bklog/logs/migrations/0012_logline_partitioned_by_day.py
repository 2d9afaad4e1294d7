"""PostgreSQL: logs_logline partitioned by day (bklog/logs/partitions.py, issue 18). Its foreign
key constraints go first (Django keeps cascading and nulling): each day's partition would carry
them, and attaching or detaching a day would lock the tables every ingest writes. An empty table
(a new installation) is then partitioned here; one with lines by `bklog partition_lines`, which the
deploy runs once every host runs this release (online; docs/upgrades.md).

SQLite: nothing in the database. Its constraints stay: Django would drop them by rebuilding the
table (a copy of every line, and FTS5's triggers lost with the old table)."""

import django.db.models.deletion
from django.db import migrations, models


def drop_foreign_keys(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'logs_logline'::regclass AND contype = 'f'")
        for (name,) in cursor.fetchall():
            cursor.execute(f'ALTER TABLE logs_logline DROP CONSTRAINT IF EXISTS "{name}"')


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
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop_foreign_keys, migrations.RunPython.noop)],
            state_operations=[
                migrations.AlterField(
                    model_name="logline",
                    name="batch",
                    field=models.ForeignKey(blank=True, db_constraint=False, null=True,
                                            on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                                            to="logs.ingestbatch"),
                ),
                migrations.AlterField(
                    model_name="logline",
                    name="index_set",
                    field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name="lines", to="logs.indexset"),
                ),
            ],
        ),
        migrations.RunPython(forward, migrations.RunPython.noop),
    ]
