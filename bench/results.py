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


# --- rates for scripts/capacity_plan.py ------------------------------------------------------

RATES = Path(__file__).resolve().parent / "measured_rates.yml"
RATES_HEADER = (
    "---\n"
    "# Rates measured by the bench scripts on one machine (`--write` updates the entries a bench\n"
    "# measured; docs/benchmarks.md has the sections they come from). scripts/capacity_plan.py sizes\n"
    "# fleets and picks the log index's backend from them. Per backend: `service` from\n"
    "# bench/service_bench.py (through gunicorn, the shipped config), `search` from\n"
    "# bench/backend_bench.py keyed by the lines the index held.\n")


def load_rates() -> dict:
    import yaml

    return yaml.safe_load(RATES.read_text()) if RATES.exists() else {}


def record_rates(backend: str, path: tuple, values: dict) -> None:
    """Set backends.<backend>.<path...> in bench/measured_rates.yml to `values`."""
    import yaml

    data = load_rates()
    node = data.setdefault("backends", {}).setdefault(backend, {})
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = values
    RATES.write_text(RATES_HEADER + yaml.safe_dump(data, sort_keys=True, default_flow_style=False))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "")
    gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    return f"{os.cpu_count()} cores ({cpu}), {gib} GiB"


# --- memory of a server and its workers ------------------------------------------------------

def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB, from /proc/PID/smaps_rollup."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key] = int(rest.split()[0])
    return values["Rss"], values["Pss"]


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def server_memory(master_pid: int) -> dict:
    """What a prefork server (gunicorn, a Celery worker program) holds: each worker's RSS, and the
    proportional set (PSS) of the master and its workers together (pages shared after the fork
    counted once), in MiB."""
    workers = [_memory_kib(pid) for pid in _children(master_pid)]
    master = _memory_kib(master_pid)
    rss = sorted(w[0] for w in workers) or [0]
    return {"workers": len(workers), "worker_rss_mib_max": round(rss[-1] / 1024, 1),
            "worker_rss_mib_median": round(rss[len(rss) // 2] / 1024, 1),
            "program_pss_mib": round((master[1] + sum(w[1] for w in workers)) / 1024, 1)}
