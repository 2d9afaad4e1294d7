"""Rolling upgrades and rollbacks of the fleet under constant load through the floating address.
Runs after the checks of the converged fleet (files run in name order): it changes the release.

1. rolling_upgrade.yml v1 -> v2, whose migration adds a column and a table (backward compatible,
   docs/upgrades.md): no failed request, every line searchable, every export done.
2. A v2.5 whose migration fails halfway: the upgrade stops before any batch (after its backup),
   the database as v2 left it, the fleet serving v2.
3. A v3 whose readiness fails: stops at the first batch, rolled back there, fleet serves v2.
4. rollback.yml: v2 -> v1 the same way (v1 runs on v2's schema)."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from agent import INDEX_SET, SyslogTraffic, wait_all_shipped
from conftest import LB, ROLLOUTS, ROOT, errors_at, group, host, playbook, running_versions, wait_until
from load import Load


@pytest.fixture
def load(new_load):
    return new_load


@pytest.fixture(scope="module", autouse=True)
def fresh_rollouts():
    ROLLOUTS.unlink(missing_ok=True)


def _check_after(traffic: Load):
    assert not traffic.failures, (f"{traffic.summary()}; first failures: {traffic.failures[:5]}; "
                                  f"errors logged then: {errors_at(traffic.failures)}")
    assert traffic.served > 100 and traffic.sent_lines > 0

    # Every line the API accepted is indexed (the index set's exact count) and found by a search.
    def indexed():
        status, body = traffic.request("GET", f"/api/v1/index_sets/{traffic.index_set}")
        return status == 200 and json.loads(body)["lines"] == traffic.sent_lines

    wait_until(indexed, f"{traffic.sent_lines} lines indexed", timeout=180, every=3)
    status, body = traffic.request("GET", f"/api/v1/index_sets/{traffic.index_set}/search?q={traffic.run_id}+accepted&size=1")
    result = json.loads(body)
    assert status == 200 and result["total"] == min(traffic.sent_lines, 10_000), result

    def exports_done():
        statuses = [json.loads(traffic.request("GET", f"/api/v1/exports/{job}")[1])["status"] for job in traffic.export_jobs]
        assert "failed" not in statuses, statuses
        return all(s == "done" for s in statuses)

    wait_until(exports_done, f"{len(traffic.export_jobs)} export jobs done", timeout=300, every=3)


def _under_load(load, name: str, *extra: str):
    traffic = load().start()
    try:
        run = playbook(name, *extra)
    finally:
        traffic.stop()
    print(f"{name} {' '.join(extra)}: {run.seconds:.0f} s, {traffic.summary()} (log: {run.log})")
    # bench/fleet_bench.py --fleet reads these measurements.
    with ROLLOUTS.open("a") as out:
        out.write(json.dumps({"playbook": name, "args": " ".join(extra), "seconds": round(run.seconds, 1),
                              "served": traffic.served, "failed": len(traffic.failures), "lines": traffic.sent_lines,
                              "exports": len(traffic.export_jobs), "load": traffic.describe(), "log": str(run.log)}) + "\n")
    return run, traffic


def _copy_of_the_project(tmp_path_factory, label: str) -> Path:
    src = tmp_path_factory.mktemp(label) / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "molecule", "tests", "docs", "bench"))
    return src


MIGRATIONS = Path("bklog") / "logs" / "migrations"
# v2's migration: what the upgrade rule allows (a nullable column, a new table), so v1 still runs on it.
V2_MIGRATION = '''from django.db import migrations, models


class Migration(migrations.Migration):
    """v2 of molecule/ha test_6_rollout.py: a nullable column and a table."""

    dependencies = [("logs", "{after}")]
    operations = [
        migrations.AddField("indexset", "upgrade_note", models.CharField(max_length=100, null=True, blank=True)),
        migrations.CreateModel("UpgradeProbe", fields=[("id", models.BigAutoField(primary_key=True, serialize=False)),
                                                       ("note", models.TextField())]),
    ]
'''
# v2.5's: a table created, then a failure (PostgreSQL runs a migration in one transaction).
FAILING_MIGRATION = '''from django.db import migrations, models


def fail(apps, schema_editor):
    raise RuntimeError("deliberately failing migration (molecule/ha test_6_rollout.py)")


class Migration(migrations.Migration):
    dependencies = [("logs", "{after}")]
    operations = [
        migrations.CreateModel("HalfDone", fields=[("id", models.BigAutoField(primary_key=True, serialize=False))]),
        migrations.RunPython(fail),
    ]
'''


def _add_migration(src: Path, name: str, text: str) -> None:
    """The next migration of the project's app after its latest one, whatever that is now."""
    latest = max(p.stem for p in (src / MIGRATIONS).glob("[0-9][0-9][0-9][0-9]_*.py"))
    (src / MIGRATIONS / f"{int(latest[:4]) + 1:04d}_{name}.py").write_text(text.replace("{after}", latest))


@pytest.fixture(scope="module")
def v2_source(tmp_path_factory) -> Path:
    src = _copy_of_the_project(tmp_path_factory, "v2")
    _add_migration(src, "upgrade_probe", V2_MIGRATION)
    return src


def _schema() -> tuple[list[str], list[str]]:
    """The columns of logs_indexset and the logs_ tables, as the API host's release sees them."""
    api = host(group("bklog_api")[0])
    out = api.check_output("/usr/local/bin/bklog shell -c " + shlex.quote(
        "import json; from django.db import connection; c = connection.cursor(); "
        "print(json.dumps([[d.name for d in connection.introspection.get_table_description(c, 'logs_indexset')], "
        "sorted(t for t in connection.introspection.table_names(c) if t.startswith('logs_'))]))"))
    columns, tables = json.loads(out.splitlines()[-1])
    return columns, tables


def test_rolling_upgrade_to_v2_under_load(load, admin_token, tmp_path, v2_source):
    before = running_versions()
    assert set(before.values()) == {"1.0.0"}, before
    # rsyslog on every host ships syslog lines through the balancer all along (roles/log_agent).
    syslog = SyslogTraffic().start()
    try:
        run, traffic = _under_load(load, "rolling_upgrade.yml", "-e", "bklog_version=2.0.0", "-e", f"bklog_source={v2_source}",
                                   "-e", f"bklog_backup_dir={tmp_path}")
    finally:
        sent = syslog.stop()
    assert run.returncode == 0, run.stdout[-6000:]
    assert set(running_versions().values()) == {"2.0.0"}
    columns, tables = _schema()
    assert "upgrade_note" in columns and "logs_upgradeprobe" in tables, (columns, tables)
    # The backup taken before the migration (bklog_rollout_backup, on by default): the database of
    # v1, from before any host ran v2.
    (backup,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["databases"] and (backup / "MANIFEST.sha256").is_file(), manifest
    assert run.stdout.index("TASK [bklog_backup") < run.stdout.index("TASK [bklog_app : Apply migrations")
    _check_after(traffic)
    # Not one syslog line lost (nor doubled) while each API host and the worker were restarted.
    wait_all_shipped(Load(LB, INDEX_SET, "", admin_token), syslog)
    print(f"syslog lines sent during the upgrade, all searchable: {sent}")


def test_a_migration_failing_halfway_stops_the_upgrade_before_any_batch(load, v2_source, tmp_path, tmp_path_factory):
    """v2.5's migration fails after creating a table: the run stops at the migration, after the
    backup it took first (what restore.yml brings back, docs/upgrades.md), before any host
    switched; the database is as v2 left it (the transaction rolled back) and the fleet serves v2."""
    src = _copy_of_the_project(tmp_path_factory, "v2-5")
    shutil.copytree(v2_source / MIGRATIONS, src / MIGRATIONS, dirs_exist_ok=True)
    _add_migration(src, "half_done", FAILING_MIGRATION)
    run, traffic = _under_load(load, "rolling_upgrade.yml", "-e", "bklog_version=2.5.0", "-e", f"bklog_source={src}",
                               "-e", f"bklog_backup_dir={tmp_path}")
    assert run.returncode != 0
    assert "deliberately failing migration" in run.stdout, run.stdout[-6000:]
    assert "Upgrade the batch" not in run.stdout  # no batch started
    (backup,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert json.loads((backup / "manifest.json").read_text())["databases"], "the backup before the migration"
    assert set(running_versions().values()) == {"2.0.0"}
    columns, tables = _schema()
    assert "upgrade_note" in columns and "logs_upgradeprobe" in tables and "logs_halfdone" not in tables, tables
    _check_after(traffic)


@pytest.fixture(scope="module")
def broken_source(tmp_path_factory) -> Path:
    """A copy of the project whose /readyz always answers 503: a release that must never serve."""
    src = _copy_of_the_project(tmp_path_factory, "broken")
    observability = src / "bklog" / "observability.py"
    text = observability.read_text()
    marker = "def readyz(request"
    assert marker in text
    observability.write_text(text.replace(marker, "def _real_readyz(request", 1) + (
        "\n\ndef readyz(request):  # deliberately broken release (molecule/ha test_6_rollout.py)\n"
        "    from django.http import JsonResponse\n"
        "    return JsonResponse({'status': 'broken on purpose'}, status=503)\n"))
    return src


def test_a_broken_v3_stops_at_the_first_batch_and_is_rolled_back(load, broken_source):
    # The backup was taken before v2 already; a gate of 20 tries (not 45) fails the broken release
    # sooner, and still gives the release rolled back to 40 s to pass it.
    run, traffic = _under_load(load, "rolling_upgrade.yml", "-e", "bklog_version=3.0.0", "-e", f"bklog_source={broken_source}",
                               "-e", "bklog_rollout_backup=false", "-e", "bklog_rollout_gate_retries=20")
    assert "No backup before this upgrade: bklog_rollout_backup is false" in " ".join(run.stdout.split())
    assert run.returncode != 0
    assert "was rolled back to 2.0.0" in run.stdout, run.stdout[-6000:]
    versions = running_versions()
    assert set(versions.values()) == {"2.0.0"}, versions
    # Only the first batch (one host) was touched: it has v3 installed, the others never got to it
    # through the serial play (the release was installed beside everywhere, never activated).
    assert run.stdout.count("Switch back and restart") >= 1
    _check_after(traffic)


def test_rollback_playbook_returns_the_fleet_to_v1(load):
    run, traffic = _under_load(load, "rollback.yml")
    assert run.returncode == 0, run.stdout[-6000:]
    assert set(running_versions().values()) == {"1.0.0"}
    _check_after(traffic)
