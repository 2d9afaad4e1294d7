"""status.yml's data-tier play follows the roles' switches: hosts of bklog_redis that each run
their own Redis (redis_sentinel false, e.g. independent all-in-ones) are not a Sentinel group that
lost its sentinels; with the switch on and no sentinel answering, it fails saying so. The hosts
are this machine (local connection); no sentinel runs here."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("sentinel, problem", [(False, None), (True, "Redis: no sentinel answers")])
def test_the_data_tier_follows_the_redis_switch(tmp_path, sentinel, problem):
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "redis_sentinel": sentinel,
            "redis_sentinel_port": 1}  # nothing listens on port 1
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"bklog_redis": {"hosts": {"a": host, "b": host}}}}}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_NOCOLOR": "1"}
    run = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path), str(ROOT / "playbooks" / "status.yml")],
                         env=env, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    if problem is None:
        assert run.returncode == 0 and "problems: []" in output, output[-3000:]
    else:
        assert run.returncode != 0 and f"data tier: {problem}" in output, output[-3000:]


@pytest.mark.parametrize("beat, vip, problems", [
    (False, None, ["celery beat runs on 0 hosts, not one: none"]),
    (False, "192.0.2.100", ["celery beat runs on 0 hosts, not one: none",
                            "the floating address is on 0 balancers, not one: none"]),
    (True, "192.0.2.100", ["the floating address is on 0 balancers, not one: none"]),
])
def test_beat_and_the_floating_address_are_each_held_once(tmp_path, beat, vip, problems):
    """The play naming beat's host and the address holder. Beat is looked for by a pattern only
    this test's own stand-in process can match (a real beat may run on this machine, inside
    another scenario's containers); no interface has the address, so it is reported missing; a
    balancer with no address set is not asked about one."""
    marker = f"bklog-test-beat-{uuid.uuid4().hex}"
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
             "bklog_status_beat_process_pattern": marker}
    balancer = {**local, **({"keepalived_virtual_ipaddress": vip} if vip else {})}
    inventory = {"all": {"children": {"bklog_workers": {"hosts": {"w1": local}}, "bklog_lb": {"hosts": {"lb1": balancer}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_NOCOLOR": "1"}
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", marker]) if beat else None
    try:
        run = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path), str(ROOT / "playbooks" / "status.yml")],
                             env=env, capture_output=True, text=True, timeout=300)
    finally:
        if stand_in:
            stand_in.kill()
            stand_in.wait()
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0 and "problems: - " + " - ".join(f"'{p}'" for p in problems) + " " in output, output[-3000:]
    assert ("beat_runs_on: - w1" in output) == beat, output[-3000:]
    assert "has no attribute" not in output


@pytest.mark.parametrize("installations, problem", [
    (True, None),  # molecule/default's shape: each host its own installation, each its own beat
    (False, "celery beat runs on 2 hosts, not one: w1, w2"),
])
def test_beat_is_counted_per_installation(tmp_path, installations, problem):
    """Two worker hosts both running beat (this test's stand-in, seen from both local hosts): a
    problem when they are one fleet, none when each is its own (celery_workers_beat_hosts)."""
    marker = f"bklog-test-beat-{uuid.uuid4().hex}"
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
             "bklog_status_beat_process_pattern": marker}
    hosts = {name: {**local, **({"celery_workers_beat_hosts": [name]} if installations else {})} for name in ("w1", "w2")}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"bklog_workers": {"hosts": hosts}}}}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_NOCOLOR": "1"}
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", marker])
    try:
        run = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path), str(ROOT / "playbooks" / "status.yml")],
                             env=env, capture_output=True, text=True, timeout=300)
    finally:
        stand_in.kill()
        stand_in.wait()
    output = " ".join((run.stdout + run.stderr).split())
    assert "beat_runs_on: - w1 - w2" in output, output[-3000:]
    if problem:
        assert f"problems: - '{problem}'" in output, output[-3000:]
    else:
        assert "problems: []" in output and "celery beat runs on" not in output, output[-3000:]
