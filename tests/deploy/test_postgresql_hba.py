"""roles/postgresql's access rules and Patroni's client TLS, rendered by Ansible on the controller
for each TLS setting: off (clear), on and required (hostssl, replicas verify the CA), and on but not
yet required (the first run of a switch from clear: every member serves TLS and still takes plain
connections, so nothing is refused while the service's hosts move to TLS). molecule/ha runs the
required case on real Patroni members."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from controller_play import ROOT, run_local_play

TASKS = """
    - ansible.builtin.include_vars: {{ file: "{root}/roles/postgresql/defaults/main.yml" }}
    - ansible.builtin.include_vars: {{ file: "{root}/roles/postgresql/vars/main.yml" }}
    - ansible.builtin.template:
        src: "{root}/roles/postgresql/templates/etc/postgresql/pg_hba.conf.j2"
        dest: "{out}/pg_hba.conf"
    - ansible.builtin.copy:
        content: "{{{{ {{'patroni_hba': __postgresql_patroni_hba, 'client_tls': __postgresql_patroni_client_tls,
                       'server_tls': __postgresql_tls_parameters}} | to_json }}}}"
        dest: "{out}/patroni.json"
        mode: "0600"
"""


def render(tmp_path: Path, **tls) -> tuple[list[str], dict]:
    # As extra vars: they take precedence over the role defaults the play loads with include_vars.
    run_local_play(tmp_path, TASKS.format(root=ROOT, out=tmp_path), {"bklog_postgresql": {"hosts": {"localhost": None}}},
                   localhost_vars={"postgresql_patroni_connect_address": "10.0.0.1"},
                   extra_vars={**tls, "postgresql_allowed_cidrs": ["10.0.1.0/24"]})
    hba = [line for line in (tmp_path / "pg_hba.conf").read_text().splitlines() if line and not line.startswith("#")]
    return hba, json.loads((tmp_path / "patroni.json").read_text())


@pytest.mark.parametrize("tls, network_type, client_tls", [
    ({}, "host", {}),
    ({"postgresql_tls_enabled": True}, "hostssl", {"sslmode": "verify-ca", "sslrootcert": "/etc/postgresql-tls/ca.crt"}),
    ({"postgresql_tls_enabled": True, "postgresql_tls_required": False}, "host", {}),
])
def test_tls_is_served_then_required(tmp_path, tls, network_type, client_tls):
    hba, patroni = render(tmp_path, **tls)
    network = [line.split() for line in hba if "10.0." in line]
    assert network and {rule[0] for rule in network} == {network_type}
    assert {rule.split()[0] for rule in patroni["patroni_hba"] if "10.0." in rule} == {network_type}
    assert patroni["client_tls"] == client_tls
    # Served whenever it is on, required or not; loopback and the socket never need it.
    assert (patroni["server_tls"].get("ssl") == "on") == bool(tls)
    assert all(line.split()[0] in ("local", "host") for line in hba if "10.0." not in line)
