"""`--check --diff` on deployed hosts (issue 20): nothing fails, nothing changes where nothing
differs, and a change is shown, with what cannot be known before it happens said, not failed."""

from __future__ import annotations

import testinfra

from playbooks import changed_per_host, inventory_hosts, plain, run_playbook


def test_preflight_passes_in_check_mode_on_a_deployed_host():
    run = run_playbook("preflight.yml", "--check", "--diff", timeout=300)
    assert run.returncode == 0, run.stdout[-4000:]
    recap = changed_per_host(run)
    assert len(recap) >= 2 and set(recap.values()) == {0}, recap


# The two site.yml checks take a host each, the Debian 12 one and the Debian 13 one in turn: each
# is a whole site.yml run (two minutes of CI's shared cores on both hosts), and what either proves
# does not depend on the other host. The limit is the host alone: the controller still builds the
# release (playbooks/wheelhouse.yml runs for the run's bklog hosts, on localhost).
def test_site_in_check_mode_changes_nothing_on_a_converged_fleet():
    first = inventory_hosts("bklog")[0]
    run = run_playbook("site.yml", "--check", "--diff", "--limit", first, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:]
    recap = changed_per_host(run)
    assert first in recap and set(recap.values()) == {0}, recap


def test_site_in_check_mode_shows_a_new_release_without_installing_it():
    last = inventory_hosts("bklog")[-1]
    hosts = {last: testinfra.get_host(f"podman://{last}")}
    current = {name: host.file("/opt/bklog/current").linked_to for name, host in hosts.items()}
    run = run_playbook("site.yml", "--check", "--diff", "-e", "bklog_version=9.9.9", "--limit", last,
                       timeout=900)
    assert run.returncode == 0, run.stdout[-4000:]
    out = plain(run.stdout)
    assert "would build /opt/bklog/releases/9.9.9" in out
    assert "+    src: /opt/bklog/releases/9.9.9" in out  # the diff of `current`
    assert "would restart every bklog program" in out
    assert "the migrations of /opt/bklog/releases/9.9.9 are known once it is built" in out
    for name, host in hosts.items():
        assert not host.file("/opt/bklog/releases/9.9.9").exists, name
        assert host.file("/opt/bklog/current").linked_to == current[name], name
