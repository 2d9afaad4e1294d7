"""Bad inventory values fail in the first seconds, naming the variable, before any host is
touched: the hosts here do not exist (an unreachable address), so reaching one would show as
UNREACHABLE instead of the message."""

from __future__ import annotations

import os
import re
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


def run_site(tmp_path: Path, playbook: str = "site.yml", infra: dict | None = None, search_nodes: dict | None = None,
             **overrides) -> subprocess.CompletedProcess:
    host_vars = {**GOOD, **overrides}
    inventory = {"all": {"children": {"bklog": {"children": {
        "bklog_api": {"hosts": {"vm1": host_vars}},
        "bklog_workers": {"hosts": {"vm1": None}},
    }}}}}
    if infra is not None:  # an infra host in every infrastructure group
        infra_vars = {"ansible_host": "192.0.2.11", "ansible_connection": "ssh", **infra}
        for group in ("bklog_consul_servers", "bklog_postgresql", "bklog_redis", "bklog_lb", "bklog_monitoring",
                      "bklog_log_agent"):
            inventory["all"]["children"][group] = {"hosts": {"infra1": infra_vars}}
    if search_nodes is not None:  # {name: host vars} in bklog_opensearch
        inventory["all"]["children"]["bklog_opensearch"] = {"hosts": {
            name: {"ansible_host": f"192.0.2.{20 + i}", "ansible_connection": "ssh", **hv}
            for i, (name, hv) in enumerate(search_nodes.items())}}
    return run_playbook(tmp_path, inventory, playbook)


@pytest.mark.parametrize("overrides, message", [
    ({"celery_workers_enabled": ["default", "pipline"]}, "celery_workers_enabled names unknown worker(s) ['pipline']"),
    ({"bklog_backup_schedule_enabled": True, "bklog_backup_schedule_keep": 0},
     "scheduled backups (bklog_backup_schedule_enabled): bklog_backup_schedule_keep=0 must be a whole number from 1"),
    ({"bklog_backup_schedule_enabled": True, "bklog_backup_schedule_hosts": ["db9"], "bklog_backup_schedule_dir": "/"},
     "bklog_backup_schedule_hosts must be bklog hosts, the ones holding the database (not: db9); "
     'bklog_backup_schedule_dir="/" must be an absolute directory'),
    ({"bklog_backup_schedule_enabled": True, "bklog_backup_schedule_max_age_hours": "a day"},
     "argument 'bklog_backup_schedule_max_age_hours' is of type str and we were unable to convert to float"),
    ({"celery_workers_overrides": {"pipeline": {"concurrency": 0}}}, "celery_workers_overrides.pipeline"),
    ({"celery_workers_overrides": {"exporter": {"concurrency": 2}}}, "celery_workers_overrides names unknown worker(s) ['exporter']"),
    ({"nginx_listen_port": 70000}, "nginx_listen_port=70000 is not a port (1-65535)"),
    ({"bklog_app_consul_service_port": 0}, "bklog_app_consul_service_port=0 is not a port"),
    ({"bklog_app_secret_key": ""}, "bklog_app_secret_key is missing or a placeholder for bklog_app_env=prod"),
    ({"bklog_app_secret_key": "CHANGE-ME-50-random-characters-xxxxxxxxxxxxxxxx"}, "bklog_app_secret_key is missing or a placeholder"),
    ({"bklog_app_redis_url": ""}, "bklog_app_env=prod needs bklog_app_database_url and bklog_app_redis_url"),
    ({"bklog_app_admin_password": "short"}, "bklog_app_admin_password must be 12 or more characters"),
    ({"bklog_app_admin_password": "CHANGE-ME-12-or-more-characters"}, "bklog_app_admin_password must be 12 or more characters and not a placeholder"),
    ({"bklog_app_env": "production"}, "bklog_app_env"),
    ({"bklog_app_gunicorn_workers": "many"}, "bklog_app_gunicorn_workers"),
    ({"nginx_tls_enabled": True}, "nginx_tls_enabled is true: nginx_tls_certificate must be a PEM certificate"),
    ({"nginx_tls_enabled": True, "nginx_tls_certificate": "-----BEGIN CERTIFICATE-----\nCHANGE-ME\n",
      "nginx_tls_certificate_key": "-----BEGIN PRIVATE KEY-----\nCHANGE-ME\n"}, "nginx_tls_certificate_key its PEM private key"),
])
def test_bad_inventory_fails_before_any_host_is_touched(tmp_path, overrides, message):
    result = run_site(tmp_path, **overrides)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in " ".join(output.split()), output[-3000:]
    assert "UNREACHABLE" not in output
    assert "Gathering Facts" not in output and "TASK [supervisor : Install" not in output


INFRA = {"redis_password": "r" * 20, "postgresql_password": "p" * 20, "consul_server": True}
CONSUL = {"bklog_consul_enabled": True, "consul_retry_join": ["infra1"]}


@pytest.mark.parametrize("playbook, overrides, infra, message", [
    ("site.yml", {**CONSUL, "consul_version": "1.15.4"}, INFRA, "consul_version must be 1.16.0 or later, as X.Y.Z (got 1.15.4)"),
    ("site.yml", {**CONSUL, "consul_install_from": "controller"}, INFRA, "consul_install_from=controller needs consul_binary_src"),
    ("site.yml", {"bklog_consul_enabled": True}, INFRA, "a client needs consul_retry_join (got [])"),
    ("site.yml", {**CONSUL, "consul_encrypt_key": "CHANGE-ME-output-of-consul-keygen"}, INFRA,
     "consul_encrypt_key must be the output of `consul keygen`"),
    ("site.yml", {**CONSUL, "consul_encrypt_required": True}, INFRA, "it is required here (consul_encrypt_required) and empty"),
    ("site.yml", {}, {**INFRA, "consul_bootstrap_expect": 2}, "consul_bootstrap_expect must be 1, 3 or 5 (got 2)"),
    ("site.yml", {}, {**INFRA, "postgresql_allowed_cidrs": ["10.0.0.0"]}, "postgresql_allowed_cidrs must be networks like 10.0.0.0/8"),
    ("site.yml", {}, {**INFRA, "postgresql_password": ""}, "postgresql_password must be set"),
    ("site.yml", {}, {**INFRA, "monitoring_scrape_interval": "5 seconds"},
     "monitoring_scrape_interval is '5 seconds': a duration like 15s"),
    ("site.yml", {}, {**INFRA, "monitoring_external_redis": [{"address": "cache.example.net:6379", "password": "pw"}]},
     "monitoring_external_redis must list {address: redis://host:port or rediss://host:port, password: ...}"),
    ("site.yml", {}, {**INFRA, "monitoring_external_postgres": ["host=db1 user=watch password=hidden"]},
     "monitoring_external_postgres libpq URLs postgresql://user:password@host:port/db (no comma; 1 entries, not shown"),
    ("site.yml", {}, {**INFRA, "monitoring_alertmanager_severity_receivers": {"critical": "pager"}},
     "every receiver of monitoring_alertmanager_severity_receivers ({'critical': 'pager'}) must be one of them"),
    ("rolling_upgrade.yml", {}, None, "bklog_rollout_smoke_token must be set (20+ characters"),
    ("site.yml", {}, {**INFRA, "log_agent_ingest_token": "CHANGE-ME-20-or-more-random-characters"},
     "log_agent_ingest_token is missing or a placeholder"),
    ("log_agent.yml", {}, {**INFRA, "log_agent_ingest_token": "t" * 20, "log_agent_batch_lines": 20000},
     "log_agent_batch_lines=20000 must be 1-10000"),
    ("log_agent.yml", {}, {**INFRA, "log_agent_ingest_token": "t" * 20, "log_agent_batch_wait_ms": -5},
     "log_agent_batch_wait_ms=-5 must be 0-60000"),
    ("site.yml", {}, {**INFRA, "log_agent_ingest_token": "t" * 20, "log_agent_index_set": "Sys Log"},
     "log_agent_index_set 'Sys Log' is not an index set name"),
    ("rolling_upgrade.yml", {"bklog_rollout_smoke_token": "t" * 24, "bklog_rollout_lb_hosts": ["lb9"]}, None,
     "bklog_rollout_lb_hosts must be inventory hosts (unknown: ['lb9'])"),
    ("rollback.yml", {}, None, "bklog_rollout_smoke_token must be set (20+ characters"),
    ("rolling_upgrade.yml", {"bklog_rollout_smoke_token": "t" * 24, "bklog_rollout_backup": False}, None,
     "bklog_rollout_backup is false in prod: an upgrade whose migration goes wrong then has no way back"),
])
def test_bad_fleet_inventory_fails_before_any_host_is_touched(tmp_path, playbook, overrides, infra, message):
    result = run_site(tmp_path, playbook, infra, **overrides)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in " ".join(output.split()), output[-3000:]
    assert "password=hidden" not in output  # a refused DSN is not printed: it may hold a password
    assert "UNREACHABLE" not in output and "Gathering Facts" not in output


def test_a_consul_after_1_16_is_accepted_with_the_licence_warning(tmp_path):
    """The operator chooses the Consul (1.16.x stays the tested default); the run says that 1.17+
    is under the Business Source License, and does not refuse it."""
    result = run_site(tmp_path, "site.yml", {**INFRA, "consul_version": "1.21.4"}, **CONSUL)
    output = " ".join((result.stdout + result.stderr).split())
    assert "consul_version 1.21.4 is released under the Business Source License 1.1" in output
    # Both hosts passed the check (in whichever order the forks finished).
    assert re.search(r"TASK \[consul : Check consul inputs\] \**\s*ok: \[(vm1|infra1)\] ok: \[(vm1|infra1)\]", output), \
        output[-3000:]
    assert "consul_version must be" not in output


def test_secrets_never_reach_the_output(tmp_path):
    result = run_site(tmp_path, bklog_app_secret_key="CHANGE-ME-" + "s3cr3t" * 8, bklog_app_redis_url="",
                      bklog_app_admin_password="CHANGE-ME-" + "s3cr3t" * 3)
    assert result.returncode != 0
    assert "s3cr3t" not in result.stdout + result.stderr


@pytest.mark.parametrize("playbook, nodes, overrides, message", [
    ("site.yml", {"os1": {}, "os2": {}}, {}, "opensearch_nodes has 2 hosts: use 1, or 3 or more"),
    ("site.yml", {"os1": {"opensearch_version": "3.1.0"}}, {}, "opensearch_version '3.1.0' must be a 2.x release"),
    ("site.yml", {"os1": {"opensearch_heap_mb": 100}}, {}, "opensearch_heap_mb=100 must be 0 (half the memory) or 512-31744"),
    ("site.yml", {n: {"opensearch_limit_nofile": 1024} for n in ("os1", "os2", "os3")}, {},
     "opensearch_limit_nofile must be 65535 or more"),
    ("site.yml", {n: {"opensearch_seed_hosts": ["os1:9300", "os2:9300"]} for n in ("os1", "os2", "os3")}, {},
     "opensearch_seed_hosts lists 2 addresses for 3 nodes"),
    ("site.yml", None, {"bklog_app_search_backend": "elastic"}, "value of bklog_app_search_backend must be one of: database, opensearch, got: elastic"),
    ("site.yml", None, {"bklog_app_search_backend": "opensearch"}, "opensearch needs bklog_app_opensearch_urls"),
    ("site.yml", {"os1": {"opensearch_snapshot_dir": "snapshots/"}}, {},
     'opensearch_snapshot_dir="snapshots/" must be an absolute directory (not /), or "" for none'),
    ("site.yml", {"os1": {"opensearch_snapshot_repository": "My Backups"}}, {},
     "opensearch_snapshot_repository=\"My Backups\": lower-case letters, digits, '-' and '_'"),
    ("site.yml", {"os1": {"opensearch_uid": -5}}, {}, "opensearch_uid=-5 must be a user id above 0, or null"),
])
def test_bad_opensearch_inputs_fail_before_any_host_is_touched(tmp_path, playbook, nodes, overrides, message):
    result = run_site(tmp_path, playbook, search_nodes=nodes, **overrides)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in " ".join(output.split()), output[-3000:]
    assert "UNREACHABLE" not in output and "Gathering Facts" not in output


def test_opensearch_with_a_sqlite_on_each_of_several_hosts_is_refused(tmp_path):
    """Line ids are numbered in the database: two hosts with a SQLite each would number different
    lines alike, and each overwrite the other's documents in the shared daily indices."""
    dev = {**GOOD, "bklog_app_env": "dev", "bklog_app_database_url": ""}
    inventory = {"all": {"children": {
        "bklog": {"children": {"bklog_api": {"hosts": {"vm1": dev, "vm2": {**dev, "ansible_host": "192.0.2.12"}}}}},
        "bklog_opensearch": {"hosts": {"os1": {"ansible_host": "192.0.2.20", "ansible_connection": "ssh"}}}}}}
    result = run_playbook(tmp_path, inventory, "validate.yml")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "with several bklog hosts (2) a shared database (bklog_app_database_url): the lines' ids are numbered there" in output


def test_a_cluster_on_loopback_transport_is_spared_the_production_limits(tmp_path):
    """Three nodes on one machine (transport on 127.0.0.1, a port each) are not checked by
    OpenSearch against the production limits, so validation does not require them either."""
    nodes = {f"os{i}": {"opensearch_transport_host": "127.0.0.1", "opensearch_transport_port": 9300 + i,
                        "opensearch_http_port": 9200 + i, "opensearch_limit_nofile": 1024,
                        "opensearch_set_max_map_count": False,
                        "opensearch_seed_hosts": ["127.0.0.1:9301", "127.0.0.1:9302", "127.0.0.1:9303"]}
             for i in (1, 2, 3)}
    result = run_site(tmp_path, "validate.yml", search_nodes=nodes)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "UNREACHABLE" not in result.stdout


DATA = {"redis_password": "r" * 20, "postgresql_password": "p" * 20, "consul_server": True, "consul_bootstrap_expect": 3,
        "postgresql_patroni_superuser_password": "s" * 20, "postgresql_patroni_replication_password": "q" * 20,
        "postgresql_patroni_restapi_password": "a" * 20}


def run_data_tier(tmp_path: Path, data_hosts: int = 3, consul_servers: int | None = None, data: dict | None = None,
                  **app) -> subprocess.CompletedProcess:
    """site.yml against an app host and data hosts that are each a Consul server (the first
    consul_servers of them), a PostgreSQL member and a Redis member: the prod inventory's shape."""
    names = [f"data{i}" for i in range(1, data_hosts + 1)]
    data_vars = {name: {"ansible_host": f"192.0.2.{30 + i}", "ansible_connection": "ssh", **DATA,
                        "consul_retry_join": names, **(data or {})} for i, name in enumerate(names)}
    inventory = {"all": {"children": {
        "bklog": {"children": {"bklog_api": {"hosts": {"vm1": {**GOOD, **app}}}, "bklog_workers": {"hosts": {"vm1": None}}}},
        "bklog_consul_servers": {"hosts": {n: data_vars[n] for n in names[:consul_servers or data_hosts]}},
        "bklog_postgresql": {"hosts": {n: data_vars[n] for n in names}},
        "bklog_redis": {"hosts": {n: data_vars[n] for n in names}},
    }}}
    return run_playbook(tmp_path, inventory, "site.yml")


@pytest.mark.parametrize("kwargs, message", [
    ({"data_hosts": 2}, "bklog_redis has 2 hosts, so Redis runs with Sentinel: it needs three or more"),
    ({"data": {"redis_sentinel_quorum": 1}}, "redis_sentinel_quorum a majority of them (got 1)"),
    ({"data": {"postgresql_patroni_replication_password": ""}},
     "postgresql_patroni_superuser_password, postgresql_patroni_replication_password and postgresql_patroni_restapi_password must be set"),
    ({"data": {"postgresql_patroni_ttl": 10}}, "Patroni needs postgresql_patroni_ttl >= 20"),
    ({"data_hosts": 4, "data": {"consul_bootstrap_expect": 3}}, "bklog_consul_servers has 4 hosts: use 1, 3 or 5"),
    ({"bklog_app_database_url": "postgres://bklog:pw@data1:5432,data2:5432/bklog"},
     "bklog_app_database_url names several hosts: add ?target_session_attrs=read-write"),
    ({"bklog_app_redis_url": "sentinel://:pw@data1:26379;redis://:pw@data2:6379"},
     "bklog_app_redis_url, when it names sentinels, must be sentinel://:password@host:26379[/db] addresses"),
    # PgBouncer: a pool that leaves PostgreSQL no room, and a direct URL that is not PostgreSQL's.
    ({"data": {"postgresql_pgbouncer_enabled": True, "postgresql_pgbouncer_pool_size": 195}},
     "postgresql_pgbouncer_pool_size (195) at least 1 and, with postgresql_reserved_connections (10) kept for Patroni, "
     "backups and exporters, within postgresql_max_connections (200)"),
    ({"bklog_app_database_direct_url": "sqlite:///x", "bklog_app_database_transaction_pooling": True},
     "bklog_app_database_url (PgBouncer's port, 6432) and bklog_app_database_direct_url (the servers' own, 5432) must both be"),
])
def test_bad_data_tier_fails_before_any_host_is_touched(tmp_path, kwargs, message):
    result = run_data_tier(tmp_path, **kwargs)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in " ".join(output.split()), output[-3000:]
    assert "UNREACHABLE" not in output and "Gathering Facts" not in output


def test_the_prod_shaped_data_tier_passes_validation(tmp_path):
    """Three data hosts (Patroni, Sentinel, Consul servers) with URLs naming them all: every check
    passes, and the run goes on to the hosts (which do not exist here)."""
    sentinels = ";".join(f"sentinel://:pw@data{i}:26379/0" for i in (1, 2, 3))
    result = run_data_tier(tmp_path, bklog_app_redis_url=sentinels, bklog_app_database_url=(
        "postgres://bklog:pw@data1:5432,data2:5432,data3:5432/bklog?target_session_attrs=read-write"))
    output = " ".join((result.stdout + result.stderr).split())
    assert "UNREACHABLE" in output, output[-3000:]
    assert "Assertion failed" not in output and "assertion:" not in output, output[-3000:]


def run_failover_tier(tmp_path: Path, balancers: int = 2, lb: dict | None = None, **app) -> subprocess.CompletedProcess:
    """validate.yml against two app hosts (API, workers, beat under the Consul lock by default)
    and `balancers` balancers sharing a floating address."""
    app_vars = {**GOOD, **CONSUL, "celery_workers_consul_enabled": True, **app}
    apps = {f"vm{i}": {**app_vars, "ansible_host": f"192.0.2.{10 + i}"} for i in (1, 2)}
    lbs = {f"lb{i}": {"ansible_host": f"192.0.2.{40 + i}", "ansible_connection": "ssh",
                      "keepalived_virtual_ipaddress": "192.0.2.100", **(lb or {})} for i in range(1, balancers + 1)}
    inventory = {"all": {"children": {
        "bklog": {"children": {"bklog_api": {"hosts": apps}, "bklog_workers": {"hosts": {n: None for n in apps}}}},
        "bklog_lb": {"hosts": lbs},
    }}}
    return run_playbook(tmp_path, inventory, "validate.yml")


def run_playbook(tmp_path: Path, inventory: dict, playbook: str) -> subprocess.CompletedProcess:
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    # A run whose inputs pass goes on to the (never contacted) hosts: one second, not Ansible's 10,
    # for each to show as UNREACHABLE.
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_TIMEOUT": "1"}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(path), str(ROOT / "playbooks" / playbook)],
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kwargs, message", [
    ({"lb": {"keepalived_virtual_ipaddress": ""}}, "keepalived_virtual_ipaddress must be the balancers' floating IPv4 address"),
    ({"lb": {"keepalived_virtual_ipaddress": "10.0.0.300"}}, 'not "10.0.0.300"'),
    ({"lb": {"keepalived_virtual_ipaddress": "192.0.2.11"}}, "is the address of an inventory host"),
    ({"lb": {"keepalived_virtual_router_id": 0}}, "keepalived_virtual_router_id (1-255, got 0)"),
    ({"celery_workers_beat_host": "vm1"}, "celery_workers_beat_host is now celery_workers_beat_hosts, a list"),
    ({"celery_workers_beat_hosts": ["vm1", "lb1"]}, "names hosts that are not worker hosts (group bklog_workers): ['lb1']"),
    ({"celery_workers_beat_lock": False, "celery_workers_beat_hosts": ["vm1", "vm2"]},
     "beat on more than one host needs celery_workers_beat_lock"),
    ({"celery_workers_consul_enabled": False, "celery_workers_beat_lock": True},
     "celery_workers_beat_lock needs the Consul agent on the worker hosts"),
])
def test_bad_balancer_or_beat_inputs_fail_before_any_host_is_touched(tmp_path, kwargs, message):
    result = run_failover_tier(tmp_path, **kwargs)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in " ".join(output.split()), output[-3000:]


def test_two_balancers_and_beat_under_a_lock_pass_validation(tmp_path):
    result = run_failover_tier(tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    one = run_failover_tier(tmp_path, balancers=1, lb={"keepalived_virtual_ipaddress": ""})
    assert one.returncode == 0, "one balancer needs no floating address: " + (one.stdout + one.stderr)[-3000:]


def _certificate(subject: str, names: list[str], issuer=None, ca: bool = False):
    """A PEM certificate and key; issuer (a (certificate, key) pair) signs it, else it signs itself."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now)
               .not_valid_after(now + datetime.timedelta(days=2))
               .issuer_name(issuer[0].subject if issuer else name)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    certificate = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return certificate, key, pem, key_pem


def _certificate_checked_first(result, message, owner: str) -> None:
    """The run stopped: with a message, at the certificate check, before any host was reached;
    without one, the check passed and the run went on to reach the (never contacted) hosts."""
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    if message is None:
        assert "UNREACHABLE" in output and f"{owner}_tls_certificate of" not in output, output[-3000:]
    else:
        assert message in output and "UNREACHABLE" not in output, output[-3000:]


@pytest.fixture(scope="module")
def consul_pki():
    ca = _certificate("consul test CA", [], ca=True)
    other_ca = _certificate("another CA", [], ca=True)
    return {
        "ca": ca[2],
        "server": _certificate("infra1", ["infra1", "server.dc1.consul"], issuer=ca[:2])[2:],
        "client": _certificate("vm1", ["vm1"], issuer=ca[:2])[2:],
        "stranger": _certificate("infra1", ["infra1", "server.dc1.consul"], issuer=other_ca[:2])[2:],
    }


@pytest.mark.parametrize("server, message", [
    ("server", None),
    ("client", "consul_tls_certificate of infra1: as a server it must name server.dc1.consul (it names: DNS:vm1)"),
    ("stranger", "consul_tls_certificate of infra1: issued by another CA, not by the CA given (consul test CA)"),
    ("missing", "consul_tls_enabled is true: consul_tls_ca_certificate and consul_tls_certificate must be PEM"),
])
def test_consul_tls_certificates_are_checked_on_the_controller(tmp_path, consul_pki, server, message):
    """RPC over TLS: each agent's certificate is read on the controller before any host is touched:
    issued by the CA given, and on a server naming server.<datacenter>.consul as Consul verifies it."""
    def tls(kind):
        certificate, key = consul_pki[kind] if kind in consul_pki else ("", "")
        return {"consul_tls_enabled": True, "consul_tls_ca_certificate": consul_pki["ca"],
                "consul_tls_certificate": certificate, "consul_tls_certificate_key": key}

    infra = {**INFRA, "log_agent_ingest_token": "t" * 20, **tls(server)}
    result = run_site(tmp_path, "site.yml", infra, **CONSUL, **tls("client"))
    _certificate_checked_first(result, message, "consul")


@pytest.mark.parametrize("names, stranger, message", [
    (["data1", "data2", "data3"], False, None),
    (["elsewhere"], False, "postgresql_tls_certificate of data1: it must name data1, the name clients verify (it names: DNS:elsewhere)"),
    (["data1", "data2", "data3"], True, "postgresql_tls_certificate of data1: issued by another CA, not by the CA given (pg test CA)"),
])
def test_postgresql_tls_certificates_are_checked_on_the_controller(tmp_path, names, stranger, message):
    """The service verifies each member's name (verify-full): a member's certificate is read on the
    controller before any host is touched: issued by the CA given, naming the inventory name."""
    ca = _certificate("pg test CA", [], ca=True)
    issuer = _certificate("another CA", [], ca=True) if stranger else ca
    _, _, certificate, key = _certificate("pg", names, issuer=issuer[:2])
    result = run_data_tier(tmp_path, data={"postgresql_tls_enabled": True, "postgresql_tls_ca_certificate": ca[2],
                                           "postgresql_tls_certificate": certificate, "postgresql_tls_certificate_key": key})
    _certificate_checked_first(result, message, "postgresql")


SENTINELS = "sentinel://:pw@data1:26379;sentinel://:pw@data2:26379;sentinel://:pw@data3:26379"


@pytest.mark.parametrize("names, app, message", [
    (["data1", "data2", "data3"], {"bklog_app_redis_url": SENTINELS}, None),
    (["elsewhere"], {"bklog_app_redis_url": SENTINELS}, "redis_tls_certificate of data1: it must name data1, the name clients verify (it names: DNS:elsewhere)"),
    # The service verifies with the CA only over TLS: a plain redis:// URL beside it is a mistake.
    (["data1", "data2", "data3"], {"bklog_app_redis_url": "redis://:pw@data1:6379/0"},
     "bklog_app_redis_url must then be rediss://... (one server) or sentinel://... (a Sentinel group), not redis://..."),
])
def test_redis_tls_certificates_are_checked_on_the_controller(tmp_path, names, app, message):
    """Redis and the sentinels TLS only: a member's certificate is read on the controller before any
    host is touched (issued by the CA given, naming the inventory name REDIS_URL uses), and the
    service's CA goes with a TLS URL."""
    ca = _certificate("redis test CA", [], ca=True)
    _, _, certificate, key = _certificate("redis", names, issuer=ca[:2])
    result = run_data_tier(tmp_path, data={"redis_tls_enabled": True, "redis_tls_ca_certificate": ca[2],
                                           "redis_tls_certificate": certificate, "redis_tls_certificate_key": key},
                           bklog_app_redis_tls_ca_certificate=ca[2], **app)
    _certificate_checked_first(result, message, "redis")
