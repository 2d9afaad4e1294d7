from django.core.management.base import BaseCommand, CommandError

from bklog.logs.index_sets import update_index_set


class Command(BaseCommand):
    help = ("Show or set the ingest rate limit of index sets (the emergency plan's 'slow the producers during a "
            "backlog'): over it, ingest answers 429 with Retry-After and shippers send again later. "
            "Prints one line per index set: NAME changed|unchanged LIMIT.")

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?", help="the index set (or --all)")
        parser.add_argument("lines_per_second", nargs="?",
                            help="lines per second the index set may ingest; 0 or off: no limit. Left out: show it")
        parser.add_argument("--all", action="store_true", help="every index set")

    def handle(self, name, lines_per_second, all, **options):
        from bklog.logs.models import IndexSet

        if all:  # `bklog rate_limit --all 500`: the one positional is the limit
            if lines_per_second is not None:
                raise CommandError("with --all, give only the limit: bklog rate_limit --all LINES_PER_SECOND")
            name, lines_per_second = None, name
            index_sets = list(IndexSet.objects.all())
        elif name is None:
            raise CommandError("name an index set, or give --all")
        else:
            index_sets = list(IndexSet.objects.filter(name=name))
            if not index_sets:
                raise CommandError(f"index set {name!r} does not exist")
        if lines_per_second is None:
            for index_set in index_sets:
                self.stdout.write(f"{index_set.name} unchanged {index_set.ingest_lines_per_second or 'off'}")
            return
        text = lines_per_second.strip().lower()
        if not (text == "off" or (text.isascii() and text.isdigit())):  # "²".isdigit(), but int() refuses it
            raise CommandError(f"lines_per_second {lines_per_second[:100]!r} must be a whole number, or off")
        limit = 0 if text == "off" else int(text)
        for index_set in index_sets:
            try:
                changed = update_index_set(index_set, {"ingest_lines_per_second": limit})
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"{index_set.name} {'changed' if changed else 'unchanged'} {limit or 'off'}")
