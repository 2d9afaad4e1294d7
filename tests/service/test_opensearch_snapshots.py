"""`bklog opensearch_snapshot`: the log lines on OpenSearch backed up with the cluster's own
snapshots and restored from them (what backup.yml and restore.yml run; the whole round trip through
the playbooks is in molecule/opensearch). Against the suite's real OpenSearch node, whose path.repo
is OPENSEARCH_SNAPSHOT_DIR (tests/opensearch.py)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone as djtz

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif(settings.BKLOG_SEARCH_BACKEND != "opensearch",
                                 reason="OpenSearch snapshots (BKLOG_SEARCH_BACKEND=opensearch)")]
REPOSITORY = "bklog-test-snapshots"


@pytest.fixture
def repository():
    from bklog.logs.store import line_store

    location = os.environ.get("OPENSEARCH_SNAPSHOT_DIR")
    assert location, "OPENSEARCH_SNAPSHOT_DIR: the test node's path.repo (tests/opensearch.py prints it)"
    client = line_store().client

    def empty():
        for snapshot in client.snapshot.get(repository=REPOSITORY, snapshot="_all")["snapshots"]:
            client.snapshot.delete(repository=REPOSITORY, snapshot=snapshot["snapshot"])

    client.snapshot.create_repository(repository=REPOSITORY, body={"type": "fs", "settings": {"location": location}})
    empty()  # what an interrupted run left
    yield REPOSITORY
    empty()


def snapshot(*args) -> dict:
    out = StringIO()
    call_command("opensearch_snapshot", *args, stdout=out)
    return json.loads(out.getvalue())


def test_a_snapshot_restores_every_line_and_new_lines_never_reuse_a_restored_id(make_index_set, stored, repository):
    from bklog.logs.models import LineIdBlock
    from bklog.logs.store import line_store

    store = line_store()
    app, _ = make_index_set("app")
    web, _ = make_index_set("web")
    now = djtz.now()
    stored.add(app, [(now - timedelta(days=1), "yesterday", {}), (now, "today one", {}), (now, "today two", {})])
    stored.add(web, [(now, "web line", {"status": 200})])

    taken = snapshot("create", "backup-20261206t030000z", "--repository", repository)
    assert taken["lines"] == {"app": 3, "web": 1} and taken["exact"] is True
    assert taken["indices"] == sorted([store.index_name("app", now - timedelta(days=1)), store.index_name("app", now),
                                       store.index_name("web", now)])

    # After the backup: a line added, a day's index lost, and the database's line id blocks as an
    # older dump had them (the snapshot is taken after the dump: its newest ids were never reserved there).
    stored.add(app, [(now, "after the backup", {})])
    store.client.indices.delete(index=store.index_name("web", now))
    highest_restored = max(line.id for line in stored.all(app))
    LineIdBlock.objects.all().delete()

    restored = snapshot("restore", "backup-20261206t030000z", "--repository", repository,
                        "--keep-current-as", "before-restore-20261206t040000z")
    assert restored["lines"] == taken["lines"]
    assert sorted(line.message for line in stored.all(app)) == ["today one", "today two", "yesterday"]
    assert [(line.message, line.fields) for line in stored.all(web)] == [("web line", {"status": 200})]
    # What the restore replaced is kept, as the database's is.
    kept = store.client.snapshot.get(repository=repository, snapshot="before-restore-20261206t040000z")["snapshots"][0]
    assert kept["state"] == "SUCCESS" and store.index_name("web", now) not in kept["indices"]
    assert store.reserve_ids(1) > highest_restored
    stored.add(app, [(now, "after the restore", {})])
    assert len(stored.all(app)) == 4


def test_each_origin_keeps_its_newest_snapshots(make_index_set, stored, repository):
    app, _ = make_index_set("app")
    stored.add(app, [(djtz.now(), "one line", {})])
    snapshot("create", "scheduled-20261201t023000z", "--repository", repository)
    for day in ("01", "02", "03"):
        result = snapshot("create", f"backup-202612{day}t100000z", "--repository", repository, "--keep", "2")
    assert result["pruned"] == ["backup-20261201t100000z"]
    from bklog.logs.store import line_store

    names = {s["snapshot"] for s in line_store().client.snapshot.get(repository=repository, snapshot="_all")["snapshots"]}
    assert names == {"scheduled-20261201t023000z", "backup-20261202t100000z", "backup-20261203t100000z"}


@pytest.mark.parametrize(("args", "message"), [
    (["create", "backup-x", "--repository", "no-such-repository"], "no snapshot repository 'no-such-repository'"),
    (["restore", "backup-19700101t000000z", "--repository", REPOSITORY, "--keep-current-as", "before-restore-x"],
     "snapshot backup-19700101t000000z is not in repository"),
    (["create", "Backup-X", "--repository", REPOSITORY], "lower-case letters, digits and '-' only"),
    (["create", "nodash", "--repository", REPOSITORY], "must be ORIGIN-STAMP"),
    (["restore", "backup-x", "--repository", REPOSITORY], "needs --keep-current-as"),
    (["create", "backup-x", "--repository", REPOSITORY, "--keep", "-1"], "--keep must be 0 or more"),
])
def test_refusals_name_what_is_wrong_and_change_nothing(make_index_set, stored, repository, args, message):
    app, _ = make_index_set("app")
    stored.add(app, [(djtz.now(), "kept", {})])
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        call_command("opensearch_snapshot", *args)
    assert [line.message for line in stored.all(app)] == ["kept"]
