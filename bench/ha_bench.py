"""The HA tier's failovers under load, as molecule/ha measures them: for each data host killed
(podman kill) while a client searches, ingests and exports, seconds until a new PostgreSQL primary
and Redis master, requests failed, lines lost; and a planned switchover's refused requests.

    uv run python bench/ha_bench.py [--results FILE] [--write]

Without --results it runs `molecule test -s ha` (about 12 minutes here) and reads what its verify
step wrote; --write appends the section to docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import molecule_measured, publish  # noqa: E402


def section(figures: dict, total: float | None) -> str:
    lines = [
        f"## High availability: data hosts, a balancer and beat's host killed under load — {datetime.now().strftime('%Y-%m-%d %H:%M')}",
        "",
        f"Machine: {os.cpu_count()} cores. `molecule/ha`: three data hosts (Debian 12), each a Consul server, a Patroni "
        "member (synchronous mode, ttl 20 s, loop_wait 5 s) and a Redis with its sentinel (down after 5 s); two app hosts "
        "(Debian 13 and 12) with nginx, gunicorn, the workers and beat under a Consul lock; two balancers (keepalived, "
        f"advert 1 s). Load through the floating address: {figures.get('load', 'not recorded')}. "
        "Seconds are from the kill to the first answer of the new leader's own check "
        "(Patroni's REST API, the sentinels), polled every 0.5 s. "
        + (f"Whole `molecule test -s ha`: {total / 60:.1f} min. " if total else "") + "One run, stated as such.",
        "",
        "| host killed | it held | new PostgreSQL primary after s | new Redis master after s | requests whole again after s "
        "| requests served | failed (all 503) | lines accepted | lines searchable (lost) | exports done | back as replica after s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kill in figures.get("kills", []):
        lines.append(
            f"| {kill['killed']} | {', '.join(kill['it_held']) or 'nothing'} | {kill['postgresql_primary_after_s']} | "
            f"{kill['redis_master_after_s']} | {kill['whole_again_after_s']} | {kill['requests_served']} | "
            f"{kill['requests_failed']} | {kill['lines_accepted']} | {kill['lines_searchable']} "
            f"({kill['lines_accepted'] - min(kill['lines_accepted'], kill['lines_searchable'])}) | "
            f"{kill['exports_done']} | {kill['rejoined_as_replica_after_s']} |")
    if "switchover" in figures:
        s = figures["switchover"]
        lines += ["", f"Planned switchover (`playbooks/switchover.yml`, the PostgreSQL primary then the Redis master, "
                      f"under the same load): {s['requests_failed']} of {s['requests_served'] + s['requests_failed']} "
                      f"requests refused with 503 while the playbook ran ({s['playbook_s']} s); {s['lines_accepted']} "
                      f"lines accepted, {s['lines_searchable']} searchable."]
    if "balancer" in figures:
        b = figures["balancer"]
        lines += ["", f"Balancer holding the floating address killed ({b['killed']}): the address answered from "
                      f"{b['address_now_on']} after {b['address_answers_after_s']} s; {b['requests_failed']} of "
                      f"{b['requests_served'] + b['requests_failed']} requests failed (those the dead balancer held); "
                      f"{b['lines_accepted']} lines accepted, {b['lines_searchable']} searchable."]
    if "beat" in figures:
        b = figures["beat"]
        lines += ["", f"Host running celery beat killed ({b['killed']}): beat ran on {b['beat_now_on']} after "
                      f"{b['beat_runs_after_s']} s (Consul's failure detection, then its 15 s lock delay); no periodic "
                      "task sent twice within its period across both hosts' logs."]
    if "consul_and_app" in figures:
        c = figures["consul_and_app"]
        lines += ["", f"A Consul server and an app host killed together ({', '.join(c['killed'])}): "
                      f"{c['requests_failed']} of {c['requests_served'] + c['requests_failed']} requests failed (those "
                      f"inside the killed app host); the primary stayed; {c['lines_accepted']} lines accepted, "
                      f"{c['lines_searchable']} searchable."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, help="figures a molecule/ha verify wrote (skips the run)")
    parser.add_argument("--write", action="store_true", help="append to docs/benchmarks.md")
    args = parser.parse_args()
    results, total = (args.results, None) if args.results else molecule_measured("ha", "bklog-ha-figures.json")
    publish(section(json.loads(results.read_text()), total), args.write)


if __name__ == "__main__":
    main()
