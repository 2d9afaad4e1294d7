#!/usr/bin/env python3
"""Build the wheelhouse once on the controller: the bklog wheel plus every locked dependency, as
wheels for each target Python (cp311 for Debian 12 hosts, cp313 for Debian 13), one tar per
Python. Beside them, uv's binary for the hosts' architecture (from uv's wheel on PyPI): hosts
build each release's virtualenv with it, offline, from the wheelhouse (`uv pip install
--no-index`, seconds where pip took a minute). No host needs PyPI (air-gapped fleets work).

    scripts/build_wheelhouse.py [--version 1.0.1] [--source DIR] [--python 3.11 3.13] [--arch x86_64]

Cached under ~/.cache/bklog-deploy/wheelhouse/<version>-<hash of sources and uv.lock>; prints
that directory (last line). `--version` builds the current sources under another version number
(for testing upgrades). The dependencies' wheels and uv's binary are cached apart, by what they
are made from (the locked requirements, the Python, the platform; uv's version), so a new version
or changed sources rebuild only the bklog wheel.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The uv the hosts run (bklog/Dockerfile's UV_VERSION says the same: a test checks).
UV_VERSION = "0.13.9"


def source_hash(root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    files = [root / "pyproject.toml", root / "uv.lock"] + sorted(
        p for p in (root / "bklog").rglob("*") if p.is_file() and "__pycache__" not in p.parts
        and not p.is_relative_to(root / "bklog" / "data"))
    digest.update(Path(__file__).resolve().read_bytes())
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def project_version(root: Path = ROOT) -> str:
    match = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(), re.M)
    return match.group(1)


def run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, **kw)


def cached(directory: Path, make) -> Path:
    """`directory`, made by make(part) into a sibling first: an interrupted build is never taken
    for a finished one."""
    if not directory.exists():
        part = directory.with_name(directory.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        make(part)
        os.replace(part, directory)
    return directory


def dependency_wheels(cache: Path, requirements: str, python: str, platforms: list[str]) -> Path:
    """Every locked dependency as a wheel for `python` on `platforms`, downloaded once per recipe."""
    tag = f"cp{python.replace('.', '')}"
    key = hashlib.sha256("\n".join([requirements, python, *platforms]).encode()).hexdigest()[:12]

    def download(part: Path) -> None:
        (part.parent / f"{part.name}.txt").write_text(requirements)
        cmd = ["uvx", "--quiet", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--abi", tag,
               "--dest", str(part), "-r", str(part.parent / f"{part.name}.txt")]
        for platform in platforms:
            cmd += ["--platform", platform]
        run(cmd)
        (part.parent / f"{part.name}.txt").unlink()
    return cached(cache / "wheels" / f"{tag}-{key}", download)


def uv_binary(cache: Path, platforms: list[str]) -> Path:
    """uv's binary for the hosts' platform, taken out of uv's wheel (a plain static executable)."""
    def fetch(part: Path) -> None:
        cmd = ["uvx", "--quiet", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", "--dest", str(part / "wheel"), f"uv=={UV_VERSION}"]
        for platform in platforms:
            cmd += ["--platform", platform]
        run(cmd)
        with zipfile.ZipFile(next((part / "wheel").glob("uv-*.whl"))) as wheel:
            (part / "uv").write_bytes(wheel.read(f"uv-{UV_VERSION}.data/scripts/uv"))
        (part / "uv").chmod(0o755)
        shutil.rmtree(part / "wheel")
    key = hashlib.sha256("\n".join([UV_VERSION, *platforms]).encode()).hexdigest()[:12]
    return cached(cache / "uv" / f"{UV_VERSION}-{key}", fetch) / "uv"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="")
    parser.add_argument("--source", type=Path, default=ROOT,
                        help="project directory to build (default: this checkout; tests build altered copies)")
    parser.add_argument("--python", nargs="+", default=["3.11", "3.13"])
    parser.add_argument("--arch", default="x86_64", choices=["x86_64", "aarch64"])
    parser.add_argument("--cache", default=os.environ.get("BKLOG_CACHE", str(Path.home() / ".cache" / "bklog-deploy")))
    args = parser.parse_args()
    root = args.source.resolve()
    args.version = args.version or project_version(root)
    if not re.fullmatch(r"[0-9A-Za-z.+_-]+", args.version):
        sys.exit(f"--version {args.version!r} is not a version")

    out = Path(args.cache) / "wheelhouse" / f"{args.version}-{args.arch}-{source_hash(root)}"
    tars = [out / f"cp{py.replace('.', '')}.tar" for py in args.python]
    uv = out / "uv"
    if uv.exists() and all(t.exists() for t in tars):
        print(f"wheelhouse cached\n{out}")
        return

    with tempfile.TemporaryDirectory(prefix="bklog-wheelhouse-") as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "src"
        shutil.copytree(root, src, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "data", "molecule", "roles", "inventories", "docs", "bench", "tests"))
        pyproject = src / "pyproject.toml"
        pyproject.write_text(re.sub(r'^version = "[^"]+"', f'version = "{args.version}"', pyproject.read_text(),
                                    count=1, flags=re.M))
        run(["uv", "build", "--wheel", "--quiet", "--out-dir", str(tmp / "dist"), str(src)])
        wheel = next((tmp / "dist").glob("bklog-*.whl"))
        requirements = subprocess.run(
            ["uv", "export", "--quiet", "--frozen", "--no-dev", "--no-emit-project", "--format", "requirements-txt"],
            cwd=root, check=True, capture_output=True, text=True).stdout
        # pip evaluates markers with the controller's Python (3.11.7 here), not the target's
        # (Debian 12 ships 3.11.2): drop Python-version markers so such wheels are always there.
        requirements = re.sub(r" ; python_(full_)?version [^\\\n]*", "", requirements)
        out.mkdir(parents=True, exist_ok=True)
        platforms = [f"manylinux_2_{v}_{args.arch}" for v in (17, 28, 34)] + [f"manylinux2014_{args.arch}"]
        cache = Path(args.cache)
        for py, tar in zip(args.python, tars):
            wheels = dependency_wheels(cache, requirements, py, platforms)
            # Reproducible archive: same inputs, same bytes (so a re-run copies nothing).
            run(["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner",
                 "-cf", str(tar) + ".part", "-C", str(wheels), ".", "-C", str(wheel.parent), wheel.name])
            os.replace(str(tar) + ".part", tar)
        shutil.copy(uv_binary(cache, platforms), str(uv) + ".part")
        os.replace(str(uv) + ".part", uv)
    print(f"wheelhouse built\n{out}")


if __name__ == "__main__":
    main()
