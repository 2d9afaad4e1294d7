"""Shared by the bench scripts: appending a section to docs/benchmarks.md, and running a molecule
scenario whose verify step writes its measurements to a file (in BKLOG_BENCH_DIR)."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = ("# Benchmarks\n\nMeasured by the scripts in `bench/`; each section says the machine and the date. "
          "Ratios are within one run (these machines are shared and noisy).\n\n")


def append_section(text: str) -> None:
    if not RESULTS.exists():
        RESULTS.write_text(HEADER)
    with RESULTS.open("a") as fh:
        fh.write(text + "\n")


def publish(text: str, write: bool) -> None:
    """Print a bench's markdown section; with --write, append it to docs/benchmarks.md too."""
    print(text)
    if write:
        append_section(text)


def molecule_measured(scenario: str, file_name: str) -> tuple[Path, float]:
    """`molecule test -s SCENARIO`; returns the file its verify step wrote in BKLOG_BENCH_DIR (a new
    directory) and the run's seconds."""
    root = Path(__file__).resolve().parents[1]
    bin_dir = Path(sys.executable).parent
    out = Path(tempfile.mkdtemp(prefix=f"bklog-{scenario}-bench-")) / file_name
    env = {**os.environ, "BKLOG_BENCH_DIR": str(out.parent), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    started = time.perf_counter()
    subprocess.run([str(bin_dir / "molecule"), "--base-config", str(root / ".config" / "molecule" / "config.yml"),
                    "test", "-s", scenario], cwd=root, env=env, check=True)
    return out, time.perf_counter() - started
