"""Deploy benchmark: wall time of a cold deploy of the all-in-one host, of the idempotent re-run,
and of a re-deploy of a new version (median of --runs fresh hosts); then, on one host, installing
a release from the wheelhouse against a per-host `pip install` from the package index.

    uv run python bench/deploy_bench.py [--runs 3] [--write]

Hosts are podman containers from scripts/build-images.sh (podman connection, as molecule uses).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAME = "bklog-bench"


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def playbook(inventory: Path, *extra: str) -> float:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    started = time.perf_counter()
    result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks" / "site.yml"),
                             *extra], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stdout[-4000:] + result.stderr[-2000:])
    return elapsed


def fresh_host() -> None:
    subprocess.run(["podman", "rm", "-f", NAME], capture_output=True)
    sh(["podman", "run", "-d", "--name", NAME, "--hostname", NAME, "--systemd=always",
        "localhost/bklog-test-bookworm:latest", "/sbin/init"])
    for _ in range(60):
        state = subprocess.run(["podman", "exec", NAME, "systemctl", "is-system-running"], capture_output=True,
                               text=True).stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    sh([str(ROOT / "scripts" / "build-images.sh"), "bookworm"])
    work = Path(tempfile.mkdtemp(prefix="bklog-deploy-bench-"))
    (work / "group_vars").symlink_to(ROOT / "inventories" / "local" / "group_vars")
    (work / "hosts.yml").write_text(
        "all:\n  children:\n    bklog:\n      children:\n"
        + "".join(f"        {g}:\n          hosts:\n            {NAME}:\n" for g in ("bklog_api", "bklog_workers", "bklog_redis"))
        + "  vars:\n    ansible_connection: containers.podman.podman\n")
    cold, idem, redeploy = [], [], []
    try:
        for run in range(args.runs):
            fresh_host()
            cold.append(playbook(work))
            idem.append(playbook(work))
            redeploy.append(playbook(work, "-e", f"bklog_version=1.0.{run + 100}"))
            print(f"run {run + 1}: cold {cold[-1]:.0f}s, idempotent {idem[-1]:.0f}s, new version {redeploy[-1]:.0f}s",
                  file=sys.stderr)
        wheelhouse_s, index_s = install_comparison()
    finally:
        subprocess.run(["podman", "rm", "-f", NAME], capture_output=True)

    lines = [
        f"## Deploy of the all-in-one host — {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {os.cpu_count()} cores, podman container (Debian 12, systemd) as the host, podman connection "
        f"(about 1 s per task; SSH is faster). `playbooks/site.yml` with `inventories/local` vars, {args.runs} fresh hosts.",
        "",
        "| run | median s | all runs s |",
        "| --- | ---: | --- |",
        f"| cold deploy (bare host to serving) | {statistics.median(cold):.0f} | {', '.join(f'{x:.0f}' for x in cold)} |",
        f"| idempotent re-run (changed=0) | {statistics.median(idem):.0f} | {', '.join(f'{x:.0f}' for x in idem)} |",
        f"| re-deploy of a new version | {statistics.median(redeploy):.0f} | {', '.join(f'{x:.0f}' for x in redeploy)} |",
        "",
        f"Installing a release into a fresh virtualenv on the host: from the wheelhouse (`pip --no-index`) "
        f"{wheelhouse_s:.1f} s, from the package index (`pip install`, same pins) {index_s:.1f} s: "
        f"**{index_s / wheelhouse_s:.1f}x** faster from the wheelhouse, and no host needs the index.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        with (ROOT / "docs" / "benchmarks.md").open("a") as fh:
            fh.write(text + "\n")


def install_comparison() -> tuple[float, float]:
    """On the deployed host: time a venv install from its wheelhouse, then the same pins from PyPI."""
    wheelhouse = sh(["podman", "exec", NAME, "sh", "-c", "ls -d /opt/bklog/wheelhouse/*-cp311 | tail -1"]).stdout.strip()
    version = wheelhouse.rsplit("/", 1)[1].rsplit("-cp311", 1)[0]
    pins = sh(["podman", "exec", NAME, "sh", "-c",
               f"/opt/bklog/releases/{version}/venv/bin/pip freeze --exclude bklog"]).stdout
    sh(["podman", "exec", "-i", NAME, "sh", "-c", "cat > /root/pins.txt"], input=pins)

    def timed(cmd: str) -> float:
        sh(["podman", "exec", NAME, "sh", "-c", "rm -rf /root/v && python3 -m venv /root/v"])
        started = time.perf_counter()
        sh(["podman", "exec", NAME, "sh", "-c", cmd])
        return time.perf_counter() - started

    wheelhouse_s = timed(f"/root/v/bin/pip install -q --no-index --find-links {wheelhouse} bklog=={version}")
    index_s = timed("/root/v/bin/pip install -q --no-cache-dir -r /root/pins.txt")
    return wheelhouse_s, index_s


if __name__ == "__main__":
    main()
