"""Back up and restore the log lines on OpenSearch with its own snapshots (`bklog
opensearch_snapshot`, run by roles/bklog_backup's bklog-backup after the database dump).

The snapshots go to a repository the cluster already has (roles/opensearch registers a filesystem
repository on its `path.repo`: shared storage on a cluster). They hold every daily index of the
prefix (`<prefix>-*`), without the cluster's global state. Names are `<origin>-<UTC stamp>`
(backup-..., scheduled-..., before-restore-...), and each origin keeps its newest N.

Order with the database: the dump is taken first, the snapshot second, so the snapshot may hold
lines whose ids the dump never reserved. A restore therefore moves the database's next line id
block past the highest id restored: a line written after the restore never overwrites a restored one.
"""

from __future__ import annotations

import time

from django.core.management.color import no_style
from django.db import connection, transaction
from opensearchpy.exceptions import NotFoundError

from bklog.logs.models import IndexSet, LineIdBlock
from bklog.logs.opensearch_store import BLOCK, IGNORE_MISSING, OpenSearchStore

POLL_SECONDS = 2


class SnapshotError(RuntimeError):
    """What the operator must know: the repository is missing, a snapshot failed or is not there."""


def check_repository(store: OpenSearchStore, repository: str) -> dict:
    try:
        return store.client.snapshot.get_repository(repository=repository)[repository]
    except NotFoundError:
        raise SnapshotError(
            f"the OpenSearch cluster has no snapshot repository {repository!r}: roles/opensearch registers it on "
            f"opensearch_snapshot_dir (path.repo, shared storage on every node of a cluster); for a cluster of "
            f"your own, register a repository of that name") from None


def line_counts(store: OpenSearchStore) -> dict[str, int]:
    """Documents per index set, after a refresh (what a search sees)."""
    store.client.indices.refresh(index=store.all_lines(), params=IGNORE_MISSING)
    return {index_set.name: store.count(index_set) for index_set in IndexSet.objects.order_by("name")}


def _snapshots(store: OpenSearchStore, repository: str) -> list[dict]:
    return store.client.snapshot.get(repository=repository, snapshot="_all")["snapshots"]


def _wait_for_snapshot(store: OpenSearchStore, repository: str, name: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = store.client.snapshot.get(repository=repository, snapshot=name)["snapshots"][0]
        if info["state"] not in ("IN_PROGRESS", "STARTED", "INIT"):
            return info
        if time.monotonic() > deadline:
            raise SnapshotError(f"snapshot {name} still {info['state']} after {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def take(store: OpenSearchStore, repository: str, name: str, timeout: float = 6 * 3600) -> dict:
    """Snapshot every line index; the lines per index set counted before and after (equal when
    nothing was written meanwhile: then `exact`, and a restore must give back these counts)."""
    check_repository(store, repository)
    before = line_counts(store)
    # Without waiting in one request (a client timeout is shorter than a big snapshot): polled.
    store.client.snapshot.create(repository=repository, snapshot=name,
                                 body={"indices": store.all_lines(), "include_global_state": False,
                                       "ignore_unavailable": True})
    info = _wait_for_snapshot(store, repository, name, timeout)
    if info["state"] != "SUCCESS":
        failures = "; ".join(str(f.get("reason")) for f in info.get("failures", [])[:3])
        raise SnapshotError(f"snapshot {name} ended {info['state']}: {failures or 'no reason given'}")
    after = line_counts(store)
    return {"repository": repository, "snapshot": name, "indices": sorted(info["indices"]),
            "lines": after, "exact": before == after}


def prune(store: OpenSearchStore, repository: str, origin: str, keep: int) -> list[str]:
    """Delete this origin's snapshots beyond its newest `keep` (names sort by their UTC stamp)."""
    mine = sorted(s["snapshot"] for s in _snapshots(store, repository) if s["snapshot"].startswith(f"{origin}-"))
    old = mine[:-keep] if keep > 0 else []
    for name in old:
        store.client.snapshot.delete(repository=repository, snapshot=name)
    return old


def restore(store: OpenSearchStore, repository: str, name: str, keep_current_as: str, timeout: float = 6 * 3600) -> dict:
    """Replace every line index with the snapshot's: the current ones are first snapshotted as
    `keep_current_as` (what a restore replaced is kept, as the database's is), then deleted, then
    the snapshot restored and the database's line ids moved past the highest restored one."""
    check_repository(store, repository)
    try:
        wanted = store.client.snapshot.get(repository=repository, snapshot=name)["snapshots"][0]
    except NotFoundError:
        raise SnapshotError(f"snapshot {name} is not in repository {repository!r} (it has: "
                            f"{', '.join(s['snapshot'] for s in _snapshots(store, repository)) or 'none'})") from None
    if wanted["state"] != "SUCCESS":
        raise SnapshotError(f"snapshot {name} is {wanted['state']}, not a complete snapshot")
    kept = take(store, repository, keep_current_as, timeout)
    current = [row["index"] for row in store.client.cat.indices(index=store.all_lines(), format="json",
                                                                 params={"h": "index", **IGNORE_MISSING})]
    for index in current:  # by name: a wildcard delete is refused where action.destructive_requires_name is set
        store.client.indices.delete(index=index, params={"ignore_unavailable": "true"})
    if wanted["indices"]:
        store.client.snapshot.restore(repository=repository, snapshot=name,
                                      body={"indices": store.all_lines(), "include_global_state": False})
        _wait_until_allocated(store, timeout, keep_current_as)
    advance_line_ids(max_line_id(store))
    return {"repository": repository, "snapshot": name, "replaced_kept_as": kept["snapshot"],
            "indices": sorted(wanted["indices"]), "lines": line_counts(store)}


def _wait_until_allocated(store: OpenSearchStore, timeout: float, kept: str) -> None:
    """Yellow: every restored primary is recovered from the snapshot (replicas follow). Polled in
    requests of 30 s (the server's wait): the client's timeout is shorter than a big restore."""
    deadline = time.monotonic() + timeout
    while True:
        health = store.client.cluster.health(index=store.all_lines(), wait_for_status="yellow",
                                             request_timeout=45)  # the server waits 30 s at most
        if not health.get("timed_out") and health["status"] != "red":
            return
        if time.monotonic() > deadline:
            raise SnapshotError(f"the restored indices are not allocated after {timeout:.0f} s ({health['status']}); "
                                f"what the restore replaced is in snapshot {kept}")
        time.sleep(POLL_SECONDS)


def max_line_id(store: OpenSearchStore) -> int:
    store.client.indices.refresh(index=store.all_lines(), params=IGNORE_MISSING)
    result = store.client.search(index=store.all_lines(), params=IGNORE_MISSING,
                                 body={"size": 0, "track_total_hits": False, "aggs": {"top": {"max": {"field": "line_id"}}}})
    value = result.get("aggregations", {}).get("top", {}).get("value")
    return int(value) if value is not None else -1


def advance_line_ids(highest: int) -> None:
    """The next reserved block starts above `highest` (each block b numbers b*BLOCK..b*BLOCK+BLOCK-1)."""
    block = highest // BLOCK + 1
    with transaction.atomic():
        newest = LineIdBlock.objects.order_by("-id").values_list("id", flat=True).first() or 0
        if (newest + 1) * BLOCK > highest:  # the next block already starts above it
            return
        LineIdBlock.objects.create(id=block)
        # PostgreSQL's sequence does not follow an explicit id; SQLite's AUTOINCREMENT does.
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), [LineIdBlock]):
                cursor.execute(sql)
