"""A real OpenSearch for tests and benchmarks: the distribution scripts/opensearch_dist.py makes
from Maven Central (cached under ~/.cache/bklog-deploy/opensearch), started on loopback as an
unprivileged user (OpenSearch refuses root) with a small heap (BKLOG_OPENSEARCH_HEAP to change it).

    python tests/opensearch.py start DIR   -> prints OPENSEARCH_URL=...
    python tests/opensearch.py stop DIR
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from opensearch_dist import distribution  # noqa: E402

USER = "bklog-opensearch"
HEAP = os.environ.get("BKLOG_OPENSEARCH_HEAP", "256m")
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"


def start(workdir: Path, port: int) -> str:
    home = distribution()
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", USER], check=True)
    # Its own copy of the config folder: OpenSearch writes a keystore into it.
    run_home = workdir / "home"
    shutil.copytree(home, run_home, symlinks=True, dirs_exist_ok=True)
    for sub in ("data", "logs", "snapshots"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    subprocess.run(["chown", "-R", USER, str(workdir)], check=True)
    log = open(workdir / "opensearch.out", "w")
    proc = subprocess.Popen(
        ["runuser", "-u", USER, "--", str(run_home / "bin" / "opensearch"), "-Ediscovery.type=single-node",
         "-Enetwork.host=127.0.0.1", f"-Ehttp.port={port}", f"-Epath.data={workdir / 'data'}",
         f"-Epath.logs={workdir / 'logs'}", f"-Epath.repo={workdir / 'snapshots'}", "-Ecluster.routing.allocation.disk.threshold_enabled=false"],
        env={**os.environ, "OPENSEARCH_JAVA_HOME": JAVA_HOME, "OPENSEARCH_JAVA_OPTS": f"-Xms{HEAP} -Xmx{HEAP}"},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (workdir / "opensearch.pid").write_text(str(proc.pid))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return url
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(1)
    raise RuntimeError(f"OpenSearch did not answer on {url}:\n" + (workdir / "opensearch.out").read_text()[-3000:])


def stop(workdir: Path) -> None:
    pid_file = workdir / "opensearch.pid"
    if pid_file.exists():
        try:
            os.killpg(int(pid_file.read_text()), 15)
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from servers import free_port

    command, directory = sys.argv[1], Path(sys.argv[2])
    if command == "start":
        print(f"OPENSEARCH_URL={start(directory, free_port())}")
        # path.repo: the snapshot tests register a filesystem repository there.
        print(f"OPENSEARCH_SNAPSHOT_DIR={directory / 'snapshots'}")
    else:
        stop(directory)
