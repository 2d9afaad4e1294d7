from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from bklog.logs.database_store import SEARCH_VECTOR_CHUNK, fill_search_vectors
from bklog.logs.search import SEARCH_VECTOR_INDEX


class Command(BaseCommand):
    help = ("PostgreSQL: store the search vector of every line stored before migration 0011, then index "
            "them and drop the old expression index (online, resumable; run once the whole fleet runs this "
            "release: rolling_upgrade.yml does). SQLite: nothing to do.")

    def add_arguments(self, parser):
        parser.add_argument("--chunk", type=int, default=SEARCH_VECTOR_CHUNK, help="lines per transaction (100-100000)")

    def handle(self, chunk, **options):
        if not 100 <= chunk <= 100000:
            raise CommandError(f"--chunk {chunk} must be 100-100000")
        if connection.vendor != "postgresql":
            self.stdout.write("nothing to do: the stored search vectors are PostgreSQL's")
            return

        def report(filled, upto, last):
            if upto // chunk % 50 == 0 or upto >= last:
                self.stdout.write(f"filled {filled} lines, up to id {min(upto, last)} of {last}")

        filled = fill_search_vectors(chunk, report)
        if filled is None:
            self.stdout.write(f"unchanged: every line has its search vector, index {SEARCH_VECTOR_INDEX} in use")
            return
        self.stdout.write(f"search vectors complete ({filled} lines filled), index {SEARCH_VECTOR_INDEX} in use")
