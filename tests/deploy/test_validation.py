"""Bad inventory values fail in the first seconds, naming the variable, before any host is
touched: the hosts here do not exist (an unreachable address), so reaching one would show as
UNREACHABLE instead of the message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

GOOD = {
    "ansible_host": "192.0.2.10",  # TEST-NET-1: never contacted
    "ansible_connection": "ssh",
    "bklog_app_env": "prod",
    "bklog_app_secret_key": "k" * 50,
    "bklog_app_database_url": "postgres://bklog:pw@db.invalid/bklog",
    "bklog_app_redis_url": "redis://:pw@redis.invalid:6379/0",
}


def run_site(tmp_path: Path, **overrides) -> subprocess.CompletedProcess:
    host_vars = {**GOOD, **overrides}
    inventory = {"all": {"children": {"bklog": {"children": {
        "bklog_api": {"hosts": {"vm1": host_vars}},
        "bklog_workers": {"hosts": {"vm1": None}},
    }}}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(path), str(ROOT / "playbooks" / "site.yml")],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("overrides, message", [
    ({"celery_workers_enabled": ["default", "pipline"]}, "celery_workers_enabled names unknown worker(s) ['pipline']"),
    ({"celery_workers_overrides": {"pipeline": {"concurrency": 0}}}, "celery_workers_overrides.pipeline"),
    ({"celery_workers_overrides": {"exporter": {"concurrency": 2}}}, "celery_workers_overrides names unknown worker(s) ['exporter']"),
    ({"nginx_listen_port": 70000}, "nginx_listen_port=70000 is not a port (1-65535)"),
    ({"bklog_app_consul_service_port": 0}, "bklog_app_consul_service_port=0 is not a port"),
    ({"bklog_app_secret_key": ""}, "bklog_app_secret_key is missing or a placeholder for bklog_app_env=prod"),
    ({"bklog_app_secret_key": "CHANGE-ME-50-random-characters-xxxxxxxxxxxxxxxx"}, "bklog_app_secret_key is missing or a placeholder"),
    ({"bklog_app_redis_url": ""}, "bklog_app_env=prod needs bklog_app_database_url and bklog_app_redis_url"),
    ({"bklog_app_env": "production"}, "bklog_app_env"),
    ({"bklog_app_gunicorn_workers": "many"}, "bklog_app_gunicorn_workers"),
])
def test_bad_inventory_fails_before_any_host_is_touched(tmp_path, overrides, message):
    result = run_site(tmp_path, **overrides)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in " ".join(output.split()), output[-3000:]
    assert "UNREACHABLE" not in output
    assert "Gathering Facts" not in output and "TASK [supervisor : Install" not in output


def test_secrets_never_reach_the_output(tmp_path):
    result = run_site(tmp_path, bklog_app_secret_key="CHANGE-ME-" + "s3cr3t" * 8, bklog_app_redis_url="")
    assert result.returncode != 0
    assert "s3cr3t" not in result.stdout + result.stderr
