"""A real OpenSearch for tests and benchmarks: the minimal distribution from Maven Central
(org.opensearch.distribution.integ-test-zip:opensearch, the newest 2.x that runs on the Java 17
here), fetched with `mvn dependency:copy`, cached under ~/.cache/bklog-deploy/opensearch, started
on loopback as an unprivileged user (OpenSearch refuses root) with a small heap.

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
import zipfile
from pathlib import Path

VERSION = "2.19.6"
ARTIFACT = f"org.opensearch.distribution.integ-test-zip:opensearch:{VERSION}:zip"
CACHE = Path(os.environ.get("BKLOG_CACHE", Path.home() / ".cache" / "bklog-deploy")) / "opensearch"
USER = "bklog-opensearch"
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"


# The minimal distribution has one module (transport-netty4). BK LOG's index template needs the
# analysis-common module (pattern tokenizer, asciifolding), which the full distribution bundles:
# its jar is on Maven Central too; the descriptor below is the one the full distribution ships.
MODULES = {
    "analysis-common": ("org.opensearch.plugin:analysis-common:{version}:jar",
                        "description=Adds \"built in\" analyzers to OpenSearch.\nversion={version}\nname=analysis-common\n"
                        "classname=org.opensearch.analysis.common.CommonAnalysisPlugin\njava.version=11\n"
                        "opensearch.version={version}\ncustom.foldername=\nextended.plugins=\nhas.native.controller=false\n"),
}


def _mvn_copy(artifact: str, directory: Path) -> None:
    # Maven's output to stderr: `start` prints the URL on stdout for the shell to read.
    subprocess.run(["mvn", "-q", "-B", "-Dstyle.color=never", "dependency:copy", f"-Dartifact={artifact}",
                    f"-DoutputDirectory={directory}"], check=True, timeout=900, stdout=sys.stderr)


def distribution() -> Path:
    home = CACHE / f"opensearch-{VERSION}"
    if not (home / "bin" / "opensearch").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        _mvn_copy(ARTIFACT, CACHE)
        with zipfile.ZipFile(CACHE / f"opensearch-{VERSION}.zip") as archive:
            archive.extractall(CACHE / "part")
        for script in (CACHE / "part" / f"opensearch-{VERSION}" / "bin").iterdir():
            script.chmod(0o755)
        (CACHE / "part" / f"opensearch-{VERSION}").rename(home)
        shutil.rmtree(CACHE / "part")
    for name, (artifact, descriptor) in MODULES.items():
        module = home / "modules" / name
        if (module / "plugin-descriptor.properties").exists():
            continue
        part = home / "modules" / f".{name}.part"
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir()
        _mvn_copy(artifact.format(version=VERSION), part)
        (part / "plugin-descriptor.properties").write_text(descriptor.format(version=VERSION))
        part.rename(module)
    return home


def start(workdir: Path, port: int) -> str:
    home = distribution()
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", USER], check=True)
    # Its own copy of the config folder: OpenSearch writes a keystore into it.
    run_home = workdir / "home"
    shutil.copytree(home, run_home, symlinks=True, dirs_exist_ok=True)
    for sub in ("data", "logs"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    subprocess.run(["chown", "-R", USER, str(workdir)], check=True)
    log = open(workdir / "opensearch.out", "w")
    proc = subprocess.Popen(
        ["runuser", "-u", USER, "--", str(run_home / "bin" / "opensearch"), "-Ediscovery.type=single-node",
         "-Enetwork.host=127.0.0.1", f"-Ehttp.port={port}", f"-Epath.data={workdir / 'data'}",
         f"-Epath.logs={workdir / 'logs'}", "-Ecluster.routing.allocation.disk.threshold_enabled=false"],
        env={**os.environ, "OPENSEARCH_JAVA_HOME": JAVA_HOME, "OPENSEARCH_JAVA_OPTS": "-Xms256m -Xmx256m"},
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
    else:
        stop(directory)
