import json
import sys
from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bklog.logs.exports import iter_lines, write_lines
from bklog.logs.models import IndexSet
from bklog.logs.search import SearchError, SearchRequest, parse_time, validate


class Command(BaseCommand):
    help = ("Stream an index set's lines, oldest first, as JSONL (for backups). "
            "--resume continues a partial --output file after its last line.")

    def add_arguments(self, parser):
        parser.add_argument("index_set")
        parser.add_argument("--output", "-o", default="-", help="file path, or - for stdout")
        parser.add_argument("--start", help="ISO 8601, inclusive")
        parser.add_argument("--end", help="ISO 8601, exclusive")
        parser.add_argument("--query", "-q", default="")
        parser.add_argument("--resume", action="store_true")

    def handle(self, index_set, output, start, end, query, resume, **options):
        target = IndexSet.objects.filter(name=index_set).first()
        if target is None:
            raise CommandError(f"index set {index_set!r} does not exist")
        try:
            request = SearchRequest(q=query, start=parse_time("start", start), end=parse_time("end", end))
            validate(request)
        except SearchError as exc:
            raise CommandError(str(exc)) from None
        after = None
        if resume:
            if output == "-":
                raise CommandError("--resume needs --output FILE")
            after = _last_position(Path(output))
        if output == "-":
            count = write_lines(iter_lines(target, request, after=after), sys.stdout, "jsonl")
        else:
            with open(output, "a" if resume else "w", encoding="utf-8") as out:
                count = write_lines(iter_lines(target, request, after=after), out, "jsonl")
        self.stderr.write(f"exported {count} lines from {index_set}")


def _last_position(path: Path):
    """(timestamp, id) of the last complete line of a partial export, or None.
    A trailing partial line (the writer died mid-line) is cut off so the file stays valid JSONL."""
    if not path.exists():
        return None
    last, good_bytes = None, 0
    with path.open("rb") as fh:
        for line in fh:
            if line.endswith(b"\n"):
                last = line
                good_bytes += len(line)
    with path.open("r+b") as fh:
        fh.truncate(good_bytes)
    if last is None:
        return None
    record = json.loads(last)
    return datetime.fromisoformat(record["timestamp"]), record["id"]
