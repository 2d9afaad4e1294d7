"""Test hosts for the bench scripts: podman containers booting systemd from scripts/build-images.sh,
reached over SSH like real hosts (the same key as the molecule scenarios)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

SSH_KEY = Path(os.environ.get("BKLOG_CACHE", Path.home() / ".cache" / "bklog-deploy")) / "ssh" / "id_ed25519"


def _ssh_key() -> Path:
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bklog-deploy-tests", "-f", str(SSH_KEY)],
                       check=True)
    return SSH_KEY


def boot_hosts(names: list[str], image: str = "localhost/bklog-test-bookworm:latest") -> dict[str, str]:
    """Fresh containers of these names, each waited for until systemd is up (at most a minute each),
    with the controller's key authorised for root. Returns each host's address."""
    key = _ssh_key().with_suffix(".pub").read_text()
    subprocess.run(["podman", "rm", "-f", *names], capture_output=True)
    for name in names:
        subprocess.run(["podman", "run", "-d", "--name", name, "--hostname", name, "--systemd=always", image, "/sbin/init"],
                       check=True, capture_output=True, text=True)
    addresses = {}
    for name in names:
        for _ in range(60):
            state = subprocess.run(["podman", "exec", name, "systemctl", "is-system-running"], capture_output=True,
                                   text=True).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(1)
        subprocess.run(["podman", "exec", "-i", name, "sh", "-c",
                        "install -d -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && systemctl start ssh"],
                       input=key, check=True, text=True)
        addresses[name] = subprocess.run(["podman", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name],
                                         check=True, capture_output=True, text=True).stdout.strip()
    return addresses


def inventory_vars() -> str:
    """Group vars (YAML, under `all: vars:`) for logging in to boot_hosts' containers over SSH."""
    return ("    ansible_user: root\n"
            f"    ansible_ssh_private_key_file: {SSH_KEY}\n"
            "    ansible_ssh_common_args: -o UserKnownHostsFile=/dev/null\n")
