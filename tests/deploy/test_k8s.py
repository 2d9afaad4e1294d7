"""playbooks/render_k8s.yml: Kubernetes manifests from the same inventory and bklog/app.yml as
the VM deploy, validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict:
an unknown field fails too). Nothing is contacted: the prod inventory's hosts do not exist."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
K8S_VERSION = "1.33.0"
SPEC = yaml.safe_load((ROOT / "bklog" / "app.yml").read_text())
VAULT = {"vault_bklog_secret_key": "s" * 50, "vault_postgres_password": "pg-pass/word", "vault_redis_password": "redis-pass"}


def render(out: Path, inventory: str = "prod", **extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
           "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    args = [f"{k}={v}" for k, v in {**VAULT, "bklog_k8s_output_dir": out, **extra}.items()]
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / inventory),
                           str(ROOT / "playbooks" / "render_k8s.yml"), *[a for arg in args for a in ("-e", arg)]],
                          env=env, capture_output=True, text=True, timeout=300)


def objects(out: Path) -> dict[tuple[str, str], dict]:
    found = {}
    for path in sorted(out.glob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] != "Kustomization":
                found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


@pytest.fixture(scope="module")
def prod(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("k8s") / "prod"
    result = render(out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return out


def test_every_manifest_passes_the_kubernetes_schemas(prod):
    files = sorted(str(p) for p in prod.glob("*.yml") if p.name != "kustomization.yml")
    result = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", K8S_VERSION, *files],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(objects(prod))


@pytest.mark.parametrize("wrong, right, message", [
    ("  replicas: 4\n", "  replicas: \"4\"\n", "spec.replicas: '4' is not of type 'integer'"),
    ("livenessProbe:", "livenesProbe:", "'livenesProbe' was unexpected"),
])
def test_the_validator_refuses_a_wrong_manifest(prod, tmp_path, wrong, right, message):
    """The check above can fail: a string replica count, a misspelt field."""
    (tmp_path / "api.yml").write_text((prod / "api.yml").read_text().replace(wrong, right, 1))
    result = subprocess.run([str(BIN / "kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(tmp_path / "api.yml")],
                            capture_output=True, text=True)
    assert result.returncode != 0 and message in result.stdout + result.stderr, result.stdout + result.stderr


def test_kustomization_lists_every_file(prod):
    listed = yaml.safe_load((prod / "kustomization.yml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in prod.glob("*.yml") if p.name != "kustomization.yml")


def test_the_api_from_the_inventory(prod):
    found = objects(prod)
    api = found[("Deployment", "bklog-api")]
    assert api["spec"]["replicas"] == 4  # the prod inventory's four API hosts
    pod = api["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "command" not in container  # the image's CMD: gunicorn with bklog/gunicorn_config.py
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Django answers only allowed host names: the probes send one.
    assert container["readinessProbe"]["httpGet"]["httpHeaders"] == [{"name": "Host", "value": "bklog.example.internal"}]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert api["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    service = found[("Service", "bklog-api")]
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]


def test_one_deployment_per_worker_of_app_yml(prod):
    found = objects(prod)
    longest = max(task["time_limit"] for task in SPEC["celery"]["tasks"].values())
    # prod: pipeline on 4 worker hosts, async_export on 2, default on 2 (celery_workers_enabled per group).
    replicas = {"pipeline": 4, "async_export": 2, "default": 2}
    for worker in SPEC["celery"]["workers"]:
        deployment = found[("Deployment", f"bklog-worker-{worker['name'].replace('_', '-')}")]
        assert deployment["spec"]["replicas"] == replicas[worker["name"]]
        pod = deployment["spec"]["template"]["spec"]
        command = pod["containers"][0]["command"]
        assert command[:4] == ["celery", "-A", SPEC["celery"]["app"], "worker"]
        assert command[command.index("-Q") + 1] == ",".join(worker["queues"])
        assert command[command.index("-c") + 1] == str(worker["concurrency"])
        assert command[command.index("--max-tasks-per-child") + 1] == str(worker["max_tasks_per_child"])
        # Warm shutdown: running tasks finish before the pod is killed.
        assert pod["terminationGracePeriodSeconds"] > longest
    assert {name for kind, name in found if name.startswith("bklog-worker-")} == {
        f"bklog-worker-{w['name'].replace('_', '-')}" for w in SPEC["celery"]["workers"]}


def test_beat_is_one_and_never_two(prod):
    beat = objects(prod)[("Deployment", "bklog-beat")]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    assert beat["spec"]["template"]["spec"]["containers"][0]["command"][:4] == ["celery", "-A", SPEC["celery"]["app"], "beat"]


def test_resources_from_app_yml(prod):
    want = {"cpu": str(SPEC["resources"]["min_cpu_cores"]), "memory": f"{SPEC['resources']['memory_mb']}Mi"}
    assert want["memory"] == "4096Mi"  # the guide's figure
    for (kind, name), doc in objects(prod).items():
        if kind in ("Deployment", "Job"):
            resources = doc["spec"]["template"]["spec"]["containers"][0]["resources"]
            assert resources == {"requests": want, "limits": want}, name


def test_migration_job_per_release(prod):
    job = objects(prod)[("Job", "bklog-migrate-1-0-0")]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["bklog", "migrate", "--no-input"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"


def test_configmap_and_secret_from_the_inventory_and_vault(prod):
    found = objects(prod)
    config = found[("ConfigMap", "bklog-config")]["data"]
    assert config["BKLOG_ENV"] == "prod" and config["BKLOG_ALLOWED_HOSTS"] == "bklog.example.internal"
    assert config["GUNICORN_BIND"] == "0.0.0.0:8000"
    assert config["GUNICORN_WORKERS"] == str(2 * SPEC["resources"]["min_cpu_cores"])
    secret = found[("Secret", "bklog-secret")]["stringData"]
    assert secret["BKLOG_SECRET_KEY"] == VAULT["vault_bklog_secret_key"]
    # The prod inventory's HA data tier: every Patroni member, every sentinel.
    infra = [f"prod-infra-0{i}.example.internal" for i in (1, 2, 3)]
    assert secret["DATABASE_URL"] == ("postgres://bklog:pg-pass%2Fword@" + ",".join(f"{h}:5432" for h in infra)
                                      + "/bklog?target_session_attrs=read-write")
    assert secret["REDIS_URL"] == ";".join(f"sentinel://:redis-pass@{h}:26379/0" for h in infra)
    # No secret outside the Secret, and the Secret's file readable by its owner only.
    for path in prod.glob("*.yml"):
        if path.name != "secret.yml":
            text = path.read_text()
            assert not any(value in text for value in VAULT.values()), path.name
    assert stat.S_IMODE((prod / "secret.yml").stat().st_mode) == 0o600
    assert stat.S_IMODE(prod.stat().st_mode) == 0o700


def test_a_second_render_changes_nothing(prod):
    result = render(prod)
    assert result.returncode == 0 and re.search(r"changed=0\b", result.stdout), result.stdout[-2000:]


@pytest.mark.parametrize("inventory, extra, message", [
    ("local", {}, "Kubernetes pods share no disk: bklog_app_database_url must be a PostgreSQL URL"),
    ("prod", {"vault_bklog_secret_key": ""}, "bklog_app_secret_key must be set"),
    ("prod", {"bklog_k8s_namespace": "BK_LOG"}, "bklog_k8s_namespace must be a DNS label (got 'BK_LOG')"),
])
def test_bad_input_is_refused_naming_it(tmp_path, inventory, extra, message):
    result = render(tmp_path / "out", inventory, **extra)
    assert result.returncode != 0
    assert message in " ".join(result.stdout.split()), result.stdout[-3000:]
    assert not (tmp_path / "out").exists()


def test_the_image_runs_what_app_yml_says():
    """bklog/Dockerfile's command and the VM deploy's program come from the same app.yml entry."""
    cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "bklog" / "Dockerfile").read_text(), re.M).group(1)
    assert yaml.safe_load(cmd) == ["gunicorn", "-c", SPEC["api"]["gunicorn_config"], SPEC["api"]["wsgi"]]
