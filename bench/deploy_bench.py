"""Deploy benchmark: wall time of a cold deploy of the all-in-one host, of the idempotent re-run,
and of a re-deploy of a new version (median of --runs fresh hosts); then, on one host, installing
a release from the wheelhouse against a per-host `pip install` from the package index.

    uv run python bench/deploy_bench.py [--runs 3] [--skip-install] [--write]

ANSIBLE_STRATEGY=mitogen_linear measures Mitogen for Ansible instead of ansible.cfg's linear strategy.

Hosts are podman containers from scripts/build-images.sh, reached over SSH (as molecule does).
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
sys.path.insert(0, str(ROOT / "bench"))
from hosts import boot_hosts, inventory_vars  # noqa: E402
from results import append_section  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--skip-install", action="store_true", help="leave out the wheelhouse/index install comparison")
    args = parser.parse_args()
    sh([str(ROOT / "scripts" / "build-images.sh"), "bookworm"])
    work = Path(tempfile.mkdtemp(prefix="bklog-deploy-bench-"))
    (work / "group_vars").symlink_to(ROOT / "inventories" / "local" / "group_vars")
    cold, idem, redeploy = [], [], []
    try:
        for run in range(args.runs):
            address = boot_hosts([NAME])[NAME]
            (work / "hosts.yml").write_text(
                "all:\n  children:\n    bklog:\n      children:\n"
                + "".join(f"        {g}:\n          hosts:\n            {NAME}:\n              ansible_host: {address}\n"
                          for g in ("bklog_api", "bklog_workers", "bklog_redis"))
                + "  vars:\n" + inventory_vars())
            cold.append(playbook(work))
            idem.append(playbook(work))
            redeploy.append(playbook(work, "-e", f"bklog_version=1.0.{run + 100}"))
            print(f"run {run + 1}: cold {cold[-1]:.0f}s, idempotent {idem[-1]:.0f}s, new version {redeploy[-1]:.0f}s",
                  file=sys.stderr)
        wheelhouse_s, index_s = (None, None) if args.skip_install else install_comparison()
    finally:
        subprocess.run(["podman", "rm", "-f", NAME], capture_output=True)

    lines = [
        f"## Deploy of the all-in-one host — {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {os.cpu_count()} cores, podman container (Debian 12, systemd) as the host, reached over SSH "
        f"(pipelining, ControlPersist). `playbooks/site.yml` with `inventories/local` vars, {args.runs} fresh hosts, "
        f"strategy {os.environ.get('ANSIBLE_STRATEGY', 'linear (ansible.cfg)')}.",
        "",
        "| run | median s | all runs s |",
        "| --- | ---: | --- |",
        f"| cold deploy (bare host to serving) | {statistics.median(cold):.0f} | {', '.join(f'{x:.0f}' for x in cold)} |",
        f"| idempotent re-run (changed=0) | {statistics.median(idem):.0f} | {', '.join(f'{x:.0f}' for x in idem)} |",
        f"| re-deploy of a new version | {statistics.median(redeploy):.0f} | {', '.join(f'{x:.0f}' for x in redeploy)} |",
    ]
    if wheelhouse_s is not None:
        lines += [
            "",
            f"Installing a release into a fresh virtualenv (median of 3): from the wheelhouse (`pip --no-index`) "
            f"{wheelhouse_s:.1f} s, from the package index (`pip install`, same pins, no cache) {index_s:.1f} s: "
            f"**{index_s / wheelhouse_s:.1f}x** faster from the wheelhouse, and no host needs the index.",
        ]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.write:
        append_section(text)


def install_comparison() -> tuple[float, float]:
    """A fresh virtualenv, the same pins: from the wheelhouse (`pip --no-index`) against from the
    package index (`pip install`, no cache). Run on the controller: the test hosts cannot reach
    the index here (its TLS proxy's CA is the controller's), which is also the air-gapped case."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_wheelhouse.py"), "--python", "3.11"],
                         check=True, capture_output=True, text=True).stdout.splitlines()[-1]
    work = Path(tempfile.mkdtemp(prefix="bklog-install-bench-"))
    sh(["tar", "-xf", f"{out}/cp311.tar", "-C", str(work)])
    wheel = next(work.glob("bklog-*.whl")).name
    version = wheel.split("-")[1]
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}

    def timed(args: list[str]) -> float:
        venv = work / "venv"
        subprocess.run(["rm", "-rf", str(venv)], check=True)
        sh(["python3", "-m", "venv", str(venv)])
        started = time.perf_counter()
        sh([str(venv / "bin" / "pip"), "install", "-q", "--no-cache-dir", *args], env=env)
        return time.perf_counter() - started

    wheelhouse_s = statistics.median(timed(["--no-index", "--find-links", str(work), f"bklog=={version}"]) for _ in range(3))
    pins = [w.name.split("-")[0].replace("_", "-") + "==" + w.name.split("-")[1] for w in work.glob("*.whl")
            if not w.name.startswith("bklog-")]
    index_s = statistics.median(timed(pins) for _ in range(3))
    return wheelhouse_s, index_s


if __name__ == "__main__":
    main()
