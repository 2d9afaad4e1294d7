#!/usr/bin/env python3
"""OpenSearch for BK LOG, from Maven Central (the only registry here that serves it): the minimal
distribution (org.opensearch.distribution.integ-test-zip:opensearch) plus the analysis-common
module BK LOG's index template needs (the full distribution bundles it; its jar is on Maven
Central too, the descriptor below is the full distribution's). Cached; built once per version.

    scripts/opensearch_dist.py [--version 2.19.6]     -> prints the tarball the opensearch role copies
Used by tests/opensearch.py (tests and benchmarks) and the opensearch role (on the controller).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

VERSION = "2.19.6"  # the newest 2.x on Maven Central that runs on Debian 12's Java 17
CACHE = Path(os.environ.get("BKLOG_CACHE", Path.home() / ".cache" / "bklog-deploy")) / "opensearch"
MODULES = {
    "analysis-common": ("org.opensearch.plugin:analysis-common:{version}:jar",
                        "description=Adds \"built in\" analyzers to OpenSearch.\nversion={version}\nname=analysis-common\n"
                        "classname=org.opensearch.analysis.common.CommonAnalysisPlugin\njava.version=11\n"
                        "opensearch.version={version}\ncustom.foldername=\nextended.plugins=\nhas.native.controller=false\n"),
}


def _mvn_copy(artifact: str, directory: Path) -> None:
    # Maven's output to stderr: callers read a path or URL on stdout.
    subprocess.run(["mvn", "-q", "-B", "-Dstyle.color=never", "dependency:copy", f"-Dartifact={artifact}",
                    f"-DoutputDirectory={directory}"], check=True, timeout=900, stdout=sys.stderr)


def distribution(version: str = VERSION) -> Path:
    """The unpacked distribution with BK LOG's modules, cached."""
    home = CACHE / f"opensearch-{version}"
    if not (home / "bin" / "opensearch").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        _mvn_copy(f"org.opensearch.distribution.integ-test-zip:opensearch:{version}:zip", CACHE)
        part = CACHE / "part"
        shutil.rmtree(part, ignore_errors=True)
        with zipfile.ZipFile(CACHE / f"opensearch-{version}.zip") as archive:
            archive.extractall(part)
        for script in (part / f"opensearch-{version}" / "bin").iterdir():
            script.chmod(0o755)
        (part / f"opensearch-{version}").rename(home)
        shutil.rmtree(part)
    for name, (artifact, descriptor) in MODULES.items():
        module = home / "modules" / name
        if (module / "plugin-descriptor.properties").exists():
            continue
        part = home / "modules" / f".{name}.part"
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir()
        _mvn_copy(artifact.format(version=version), part)
        (part / "plugin-descriptor.properties").write_text(descriptor.format(version=version))
        part.rename(module)
    return home


def tarball(version: str = VERSION) -> Path:
    """distribution() as opensearch-<version>-bklog.tar.gz, for the hosts."""
    path = CACHE / f"opensearch-{version}-bklog.tar.gz"
    if not path.exists():
        home = distribution(version)
        part = path.with_suffix(".part")
        with tarfile.open(part, "w:gz") as archive:
            archive.add(home, arcname=f"opensearch-{version}")
        part.rename(path)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default=VERSION)
    print(tarball(parser.parse_args().version))
