"""Test hosts for the bench scripts: podman containers booting systemd from scripts/build-images.sh."""

from __future__ import annotations

import subprocess
import time


def boot_hosts(names: list[str], image: str = "localhost/bklog-test-bookworm:latest") -> None:
    """Fresh containers of these names, each waited for until systemd is up (at most a minute each)."""
    subprocess.run(["podman", "rm", "-f", *names], capture_output=True)
    for name in names:
        subprocess.run(["podman", "run", "-d", "--name", name, "--hostname", name, "--systemd=always", image, "/sbin/init"],
                       check=True, capture_output=True, text=True)
    for name in names:
        for _ in range(60):
            state = subprocess.run(["podman", "exec", name, "systemctl", "is-system-running"], capture_output=True,
                                   text=True).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(1)
