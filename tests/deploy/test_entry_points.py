"""The entry points one role calls in another (issue 22: each role does its own job), run on the
controller in check mode: the plumbing (include, delegation, argument specs) and the data handed
over. What they change on a host (nginx reloads, Consul loads the services) is exercised by
molecule/ha's rolling upgrade and worker checks."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from controller_play import run_local_play

ROOT = Path(__file__).resolve().parents[2]


def test_celery_workers_hands_consul_a_service_per_worker_program(tmp_path):
    out = tmp_path / "services.json"
    tasks = f"""
    - name: Load celery_workers' variables (validate is its entry point without side effects)
      ansible.builtin.include_role:
        name: celery_workers
        tasks_from: validate
        public: true
    - name: What the role hands the consul role
      ansible.builtin.copy:
        content: "{{{{ lookup('ansible.builtin.template', '{ROOT}/roles/celery_workers/templates/consul_services.json.j2') }}}}"
        dest: {out}
        mode: "0644"
"""
    # role_path: the template is rendered from outside the role, where Ansible sets none.
    run_local_play(tmp_path, tasks, {"bklog_workers": {"hosts": {"localhost": {}}}},
                   {"role_path": str(ROOT / "roles" / "celery_workers")})
    services = json.loads(out.read_text())
    spec = yaml.safe_load((ROOT / "bklog" / "app.yml").read_text())
    prefix = spec["celery"]["worker_program_prefix"]
    programs = [prefix + worker["name"] for worker in spec["celery"]["workers"]]
    assert [s["name"] for s in services] == programs
    for service, worker in zip(services, spec["celery"]["workers"], strict=True):
        program = prefix + worker["name"]
        definition = service["definition"]["service"]
        assert definition["id"] == f"{program}-localhost"
        assert definition["meta"] == {"queues": ",".join(worker["queues"])}
        assert definition["check"]["args"] == ["sudo", "-n", "/usr/local/sbin/supervisor-state", program]


def test_nginx_backend_and_consul_services_entry_points_run_delegated_in_check_mode(tmp_path):
    backends, consul_dir = tmp_path / "backends", tmp_path / "consul.d"
    backends.mkdir()
    consul_dir.mkdir()
    (consul_dir / "bklog-worker-gone.json").write_text("{}")
    tasks = f"""
    - name: Drain this host on the balancers (the rollout's call)
      ansible.builtin.include_role:
        name: nginx
        tasks_from: backend
        apply:
          delegate_to: "{{{{ balancer }}}}"
      vars:
        nginx_backend: "api1:80"
        nginx_backend_state: down
        nginx_backends_dir: {backends}
      loop: [localhost]
      loop_control:
        loop_var: balancer
    - name: Register services (celery_workers' call)
      ansible.builtin.include_role:
        name: consul
        tasks_from: services
      vars:
        consul_services: [{{name: bklog-worker-default, definition: {{service: {{name: bklog-worker}}}}}}]
        consul_services_prune: bklog-worker-*.json
        consul_config_dir: {consul_dir}
"""
    block = "    - name: In check mode\n      check_mode: true\n      block:\n" + "\n".join("    " + line if line else line for line in tasks.splitlines())
    run_local_play(tmp_path, block + "\n", {})
    # Check mode changed nothing.
    assert list(backends.iterdir()) == []
    assert [p.name for p in consul_dir.iterdir()] == ["bklog-worker-gone.json"]
