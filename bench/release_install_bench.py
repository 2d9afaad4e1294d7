"""Release install benchmark: what building a release's virtualenv from the wheelhouse takes on a
host, with uv (what roles/bklog_app runs) against pip (what it ran before), in one run.

    uv run python bench/release_install_bench.py [--runs 5] [--write]

In a test host container (the molecule image, Python 3.11), RUNS times each, alternating:
`uv venv` + `uv pip install --no-index --compile-bytecode`, and `python3 -m venv` + `pip install
--no-index` (pip compiles bytecode by default), both offline from the same wheelhouse tar.
Prints a markdown section (--write appends it to docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from results import publish  # noqa: E402

IMAGE = "localhost/bklog-test-bookworm:latest"
UV = ("/wh/uv venv --quiet --offline --no-python-downloads --python /usr/bin/python3 /tmp/r/venv && "
      "/wh/uv pip install --quiet --offline --no-index --no-cache --compile-bytecode "
      "--python /tmp/r/venv/bin/python --find-links /tmp/w bklog")
PIP = ("python3 -m venv /tmp/r/venv && /tmp/r/venv/bin/pip install -q --no-index --disable-pip-version-check "
       "--no-cache-dir --find-links /tmp/w bklog")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    wheelhouse = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_wheelhouse.py")], check=True,
                                capture_output=True, text=True).stdout.splitlines()[-1]
    # Each run in a fresh directory; the timing is printed by the shell inside the container.
    script = "mkdir -p /tmp/w && tar -C /tmp/w -xf /wh/cp311.tar\n" + "".join(
        f"rm -rf /tmp/r; s=$(date +%s.%N); {cmd}; e=$(date +%s.%N); echo {name} $(python3 -c \"print($e - $s)\")\n"
        for _ in range(args.runs) for name, cmd in (("uv", UV), ("pip", PIP)))
    out = subprocess.run(["podman", "run", "--rm", "-v", f"{wheelhouse}:/wh:ro", IMAGE, "bash", "-ec", script],
                         check=True, capture_output=True, text=True).stdout
    times: dict[str, list[float]] = {"uv": [], "pip": []}
    for line in out.splitlines():
        name, seconds = line.split()
        times[name].append(float(seconds))
    uv, pip = statistics.median(times["uv"]), statistics.median(times["pip"])
    publish(f"""## Release virtualenv from the wheelhouse, uv against pip — {datetime.now():%Y-%m-%d %H:%M}

Machine: {os.cpu_count()} cores, {platform.machine()}, in a test host container ({IMAGE}, Python 3.11);
{args.runs} runs each, alternating, same wheelhouse (bklog and its locked dependencies), offline.

| installer | median s | runs s |
| --- | ---: | --- |
| uv venv + uv pip install --compile-bytecode | {uv:.1f} | {", ".join(f"{t:.1f}" for t in times["uv"])} |
| python3 -m venv + pip install | {pip:.1f} | {", ".join(f"{t:.1f}" for t in times["pip"])} |

uv builds a release **{pip / uv:.1f}x** faster (bench/release_install_bench.py). Every host builds one per
upgrade, inside the rolling window.
""", args.write)


if __name__ == "__main__":
    main()
