"""site.yml run again on the converged fleet changes nothing: the scenario's idempotence step, on
one host of each kind rather than all seven (molecule.yml leaves molecule's own step out).

The Debian 13 app host, the first data host (the Patroni, Redis and Consul leader it bootstrapped)
and a replica, both balancers (keepalived needs its peers in the play): every role and every part
the fleet's other hosts play (a replica's tasks differ from the leader's) runs once here; the other
app host and the other replica are the same again. The
all-in-one scenario (molecule/default) runs the app roles' full idempotence step on Debian 12 and
13. Runs first (files run in name order): the other checks change the fleet."""

from __future__ import annotations

from conftest import group, playbook
from playbooks import changed_per_host, changed_tasks


def test_site_again_changes_nothing():
    data = group("bklog_postgresql")
    hosts = [group("bklog_api")[0], data[0], data[1], *group("bklog_lb")]  # bklog-ha-app: Debian 13
    run = playbook("site.yml", "--limit", ",".join(hosts))
    assert run.returncode == 0, run.stdout[-6000:]
    recap = changed_per_host(run)
    assert set(hosts) <= set(recap), recap
    assert set(recap.values()) == {0}, (recap, changed_tasks(run))
