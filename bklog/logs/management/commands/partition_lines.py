from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from bklog.logs import partitions


class Command(BaseCommand):
    help = ("PostgreSQL: partition the lines' table by day (retention then drops whole days), online and "
            "resumable: run once the whole fleet runs this release, after fill_search_vectors (the deploy's "
            "data step does both). SQLite: nothing to do.")

    def handle(self, **options):
        if connection.vendor != "postgresql":
            self.stdout.write("nothing to do: the lines' table is partitioned on PostgreSQL only")
            return
        try:
            converted = partitions.convert(report=self.stdout.write)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        if not converted:
            self.stdout.write(f"unchanged: {partitions.TABLE} is partitioned by day")
