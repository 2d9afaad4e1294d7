"""The full-text index over logs_logline.message, per database vendor.

SQLite: an FTS5 external-content table kept in step by three triggers. Django's SQLite schema
editor rebuilds a table (dropping its triggers) on many ALTERs: a later migration that alters
logs_logline must re-run create_sqlite_fts() — /readyz fails if the triggers are missing.
PostgreSQL: a GIN index on to_tsvector('simple', message).
"""

from django.db import migrations

SQLITE_CREATE = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS logs_logline_fts USING fts5("
    "message, content='logs_logline', content_rowid='id', tokenize='unicode61')",
    "CREATE TRIGGER IF NOT EXISTS logs_logline_fts_ai AFTER INSERT ON logs_logline BEGIN "
    "INSERT INTO logs_logline_fts(rowid, message) VALUES (new.id, new.message); END",
    "CREATE TRIGGER IF NOT EXISTS logs_logline_fts_ad AFTER DELETE ON logs_logline BEGIN "
    "INSERT INTO logs_logline_fts(logs_logline_fts, rowid, message) VALUES ('delete', old.id, old.message); END",
    "CREATE TRIGGER IF NOT EXISTS logs_logline_fts_au AFTER UPDATE OF message ON logs_logline BEGIN "
    "INSERT INTO logs_logline_fts(logs_logline_fts, rowid, message) VALUES ('delete', old.id, old.message); "
    "INSERT INTO logs_logline_fts(rowid, message) VALUES (new.id, new.message); END",
    # Index rows that existed before the index did (no-op on a new database).
    "INSERT INTO logs_logline_fts(logs_logline_fts) VALUES ('rebuild')",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS logs_logline_fts_ai",
    "DROP TRIGGER IF EXISTS logs_logline_fts_ad",
    "DROP TRIGGER IF EXISTS logs_logline_fts_au",
    "DROP TABLE IF EXISTS logs_logline_fts",
]
POSTGRES_CREATE = [
    "CREATE INDEX IF NOT EXISTS logs_logline_message_fts ON logs_logline USING gin (to_tsvector('simple', message))",
]
POSTGRES_DROP = ["DROP INDEX IF EXISTS logs_logline_message_fts"]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        if vendor not in statements_by_vendor:
            raise RuntimeError(f"bklog supports SQLite and PostgreSQL, not {vendor}")
        for sql in statements_by_vendor[vendor]:
            schema_editor.execute(sql)
    return run


create_sqlite_fts = _run({"sqlite": SQLITE_CREATE, "postgresql": POSTGRES_CREATE})
drop_fulltext = _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP})


class Migration(migrations.Migration):
    dependencies = [("logs", "0001_initial")]
    operations = [migrations.RunPython(create_sqlite_fts, drop_fulltext)]
