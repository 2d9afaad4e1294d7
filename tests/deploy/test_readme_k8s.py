"""The README's Kubernetes section, run as written, with two differences said here: the vault's
password prompt (--ask-vault-pass) is answered by a test vault given with -e @file, and
`kubectl apply` is not run (no Kubernetes cluster here: the manifests are validated against the
Kubernetes schemas by the line before it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from readme_blocks import blocks  # noqa: E402


def test_the_kubernetes_section_runs_as_written(tmp_path):
    vault = tmp_path / "vault.yml"
    vault.write_text(yaml.safe_dump({"vault_bklog_secret_key": "v" * 50, "vault_postgres_password": "pg",
                                      "vault_redis_password": "redis"}))
    (block,) = blocks("tests/deploy/test_readme_k8s.py")
    lines = [line for line in block.splitlines() if line.strip()]
    assert lines[-1].startswith("kubectl apply -k build/k8s/prod")
    script = "\n".join(lines[:-1]).replace("--ask-vault-pass", f"-e @{vault}")
    out = ROOT / "build" / "k8s" / "prod"
    shutil.rmtree(out, ignore_errors=True)
    try:
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert run.stdout.count(" passed for resource ") == 10, run.stdout[-2000:]
        assert (out / "kustomization.yml").exists()
    finally:
        shutil.rmtree(out, ignore_errors=True)
