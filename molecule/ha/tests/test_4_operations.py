"""Operations on the fleet: status.yml with the real Consul checks and the shared broker; backup.yml
and restore.yml of the Patroni cluster's database (pg_dump in a snapshot on whichever member is the
primary, pg_restore into it), with every program of the fleet stopped for the restore and the fleet
healthy again after. Runs before test_6_rollout."""

from __future__ import annotations

import json
import time

import pytest

from conftest import group, host, playbook, wait_until
from playbooks import COUNT_LINES

LINES = 200
# rsyslog on every host ships into it all along (roles/log_agent): it grows during these tests.
LIVE_INDEX_SET = "syslog"


def _settled(counts: dict) -> dict:
    """The counts of the index sets nothing writes to meanwhile."""
    return {name: n for name, n in counts.items() if name != LIVE_INDEX_SET}


def _grew_or_kept(after: dict, before: dict) -> bool:
    return after.get(LIVE_INDEX_SET, 0) >= before.get(LIVE_INDEX_SET, 0)


def _counts() -> dict:
    return json.loads(host(group("bklog_api")[0]).check_output(f"bklog shell -c '{COUNT_LINES}'").splitlines()[-1])


def _status(tmp_path):
    out = tmp_path / f"status-{time.time_ns()}.json"
    run = playbook("status.yml", "-e", f"bklog_status_output={out}",
                   # the hosts share this machine's disk, whatever its use
                   "-e", "bklog_status_max_disk_percent=99", timeout=300)
    return run, json.loads(out.read_text())


def test_status_of_a_healthy_fleet(tmp_path):
    run, report = wait_until(lambda: (lambda r: r if r[0].returncode == 0 else None)(_status(tmp_path)),
                             "status.yml to find the fleet healthy", timeout=120, every=5)
    assert sorted(report["hosts"]) == group("bklog")
    for name in group("bklog_api"):
        checks = report["hosts"][name]["consul_checks"]
        assert {c["service"] for c in checks} >= {"bklog-api"} and all(c["status"] == "passing" for c in checks)
    worker = report["hosts"][group("bklog_workers")[0]]
    assert {c["service"] for c in worker["consul_checks"]} >= {"bklog-worker"}
    assert set(worker["backlog"]["queues"]) >= {"pipeline", "async_export", "default"}


@pytest.fixture
def index_set():
    api = host(group("bklog_api")[0])
    name = f"backup{int(time.time())}"
    token = api.check_output(f"bklog create_index_set {name}")
    body = "\\n".join(f"cluster backup line {i}" for i in range(LINES))
    api.check_output(f"printf '{body}' | curl -sS -f -o /dev/null -H 'Authorization: Bearer {token}' "
                     f"--data-binary @- http://127.0.0.1/api/v1/index_sets/{name}/ingest")
    wait_until(lambda: _counts().get(name) == LINES, f"{LINES} lines indexed", timeout=90)
    return name


def test_backup_and_restore_of_the_shared_database(index_set, tmp_path):
    before = _counts()
    run = playbook("backup.yml", "-e", f"bklog_backup_dir={tmp_path}", timeout=900)
    assert run.returncode == 0, run.stdout[-5000:]
    (backup,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    manifest = json.loads((backup / "manifest.json").read_text())
    # One shared database: dumped once, from the first bklog host; configuration from every host.
    assert list(manifest["databases"]) == [group("bklog")[0]]
    db = manifest["databases"][group("bklog")[0]]
    # The native dump and the JSONL lines: every settled index set exact; the live one at least
    # what it had before (each is read in its own snapshot while rsyslog keeps shipping).
    assert db["kind"] == "postgresql"
    for counted in (db["native_lines"], db["lines"]):
        assert _settled(counted) == _settled(before) and _grew_or_kept(counted, before), (counted, before)
    assert (backup / group("bklog")[0] / "db.pgdump").is_file()
    assert all((backup / h / "config.tar.gz").is_file() for h in manifest["hosts"])
    backed_up = ("bklog", "bklog_consul_servers", "bklog_postgresql", "bklog_redis", "bklog_lb")  # backup.yml's hosts
    assert sorted(manifest["hosts"]) == sorted({name for g in backed_up for name in group(g)})

    host(group("bklog_api")[0]).check_output(
        f"bklog shell -c 'from bklog.logs.models import IndexSet; IndexSet.objects.filter(name=\"{index_set}\").delete()'")
    assert index_set not in _counts()

    run = playbook("restore.yml", "-e", f"bklog_backup_dir={tmp_path}", timeout=1200)
    assert run.returncode == 0, run.stdout[-5000:]
    after = _counts()
    assert _settled(after) == _settled(before) and _grew_or_kept(after, db["native_lines"]), (after, before)
    run, report = wait_until(lambda: (lambda r: r if r[0].returncode == 0 else None)(_status(tmp_path)),
                             "the fleet healthy again after the restore", timeout=180, every=5)
    assert report["healthy"]
