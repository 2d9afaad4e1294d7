#!/usr/bin/env python3
"""The controller's side of playbooks/backup.yml and restore.yml (standard library only).

    backup_manifest.py write DIR           manifest.json (hosts, databases, lines per index set, the
                                           OpenSearch snapshot when the lines are there) and
                                           MANIFEST.sha256 (sha256sum format) of everything in DIR
    backup_manifest.py verify DIR          check every checksum; print manifest.json; exit 1 naming
                                           each missing, changed or unlisted file
    backup_manifest.py resolve BASE [NAME] the backup directory to restore: NAME (in BASE, or a path),
                                           or the newest complete one in BASE
    backup_manifest.py prune BASE KEEP     delete all but the newest KEEP backups in BASE
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

STAMP = re.compile(r"^\d{8}T\d{6}Z$")
SUMS = "MANIFEST.sha256"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != SUMS)


def write(root: Path, name: str = "") -> None:
    """name: the backup's, when root is still being written under another (bklog-backup's .partial)."""
    databases = {}
    for host_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        info = host_dir / "database.json"
        if info.exists():
            db = json.loads(info.read_text())
            # The exported files' lines, or the OpenSearch snapshot's (counted when it was taken).
            db["lines"] = db["snapshot"]["lines"] if "snapshot" in db else {
                name: sum(1 for _ in (host_dir / "lines" / f"{name}.jsonl").open("rb")) for name in db["index_sets"]}
            databases[host_dir.name] = db
    manifest = {"name": name or root.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "hosts": sorted(p.name for p in root.iterdir() if p.is_dir()), "databases": databases}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (root / SUMS).write_text("".join(f"{sha256(p)}  {p.relative_to(root)}\n" for p in files(root)))
    print(json.dumps(manifest))


def verify(root: Path) -> None:
    sums = root / SUMS
    if not sums.exists():
        sys.exit(f"{root}: no {SUMS}: not a complete backup")
    listed, problems = set(), []
    for line in sums.read_text().splitlines():
        digest, name = line.split("  ", 1)
        listed.add(name)
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256(path) != digest:
            problems.append(f"{name}: checksum differs from {SUMS}")
    problems += [f"{p.relative_to(root)}: not in {SUMS}" for p in files(root) if str(p.relative_to(root)) not in listed]
    if problems:
        sys.exit(f"backup {root} is damaged, nothing was restored:\n  " + "\n  ".join(problems))
    print((root / "manifest.json").read_text())


def complete(base: Path) -> list[Path]:
    return sorted(p for p in base.iterdir() if p.is_dir() and STAMP.match(p.name) and (p / SUMS).exists()) \
        if base.is_dir() else []


def resolve(base: Path, name: str = "") -> None:
    if name:
        path = Path(name) if "/" in name else base / name
        if not path.is_dir():
            sys.exit(f"backup {name!r} not found (looked for {path})")
        print(path.resolve())
        return
    backups = complete(base)
    if not backups:
        sys.exit(f"no complete backup in {base}")
    print(backups[-1].resolve())


def prune(base: Path, keep: int) -> None:
    backups = complete(base)
    for old in backups[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
        print(f"deleted {old}")


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "write":
        write(Path(args[0]))
    elif command == "verify":
        verify(Path(args[0]))
    elif command == "resolve":
        resolve(Path(args[0]), args[1] if len(args) > 1 else "")
    elif command == "prune":
        prune(Path(args[0]), int(args[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
