"""Syslog traffic on the fleet's hosts: `logger` lines, numbered, that rsyslog (roles/log_agent)
ships into the index set through the balancer; what was sent is counted on each host."""

from __future__ import annotations

import json
import subprocess
import uuid

from conftest import group, host, wait_until
from load import Load

INDEX_SET = "syslog"


class SyslogTraffic:
    """One `logger` line every `every` seconds on each of `hosts` (every bklog_log_agent host), until stopped."""

    def __init__(self, every: float = 0.5, hosts: list[str] | None = None):
        self.run_id = "agent" + uuid.uuid4().hex[:10]
        self.every = every
        self.hosts = hosts or group("bklog_log_agent")
        self.sent: dict[str, int] = {}

    def start(self) -> "SyslogTraffic":
        for name in self.hosts:
            tag = self.tag(name)
            # Detached inside the host (podman exec -d): it outlives this call, counts what it sent.
            script = (f"rm -f /tmp/{self.run_id}.*; i=0; while [ ! -e /tmp/{self.run_id}.stop ]; do "
                      f"i=$((i+1)); logger -t agent-check \"{tag} from {name} line $i\"; echo $i > /tmp/{self.run_id}.sent; "
                      f"sleep {self.every}; done; touch /tmp/{self.run_id}.done")
            subprocess.run(["podman", "exec", "-d", name, "sh", "-c", script], check=True)
        return self

    def tag(self, name: str) -> str:
        """One search token per host and run (host names have hyphens, which a query splits)."""
        return f"{self.run_id}h{group('bklog_log_agent').index(name)}"

    def stop(self) -> dict[str, int]:
        for name in self.hosts:
            host(name).check_output(f"touch /tmp/{self.run_id}.stop")
        for name in self.hosts:
            wait_until(lambda: host(name).file(f"/tmp/{self.run_id}.done").exists, f"the logger loop on {name} to end", timeout=30)
            self.sent[name] = int(host(name).check_output(f"cat /tmp/{self.run_id}.sent"))
        return self.sent


def search_total(client: Load, query: str, program: str = "") -> int:
    # With the program: BK LOG's own access lines of these searches carry the query words too.
    only = f"&field.program={program}" if program else ""
    try:
        status, body = client.request("GET", f"/api/v1/index_sets/{INDEX_SET}/search?q={query}{only}&size=1")
    except OSError:  # nothing on the floating address yet: keepalived moves it back once nginx is up
        return -1
    return json.loads(body)["total"] if status == 200 else -1


def wait_all_shipped(client: Load, traffic: SyslogTraffic, timeout: float = 240) -> None:
    """Every line sent is searchable, once: per host, the count found equals the count sent."""
    def counts():
        return {name: search_total(client, traffic.tag(name), program="agent-check") for name in traffic.sent}

    try:
        wait_until(lambda: counts() == traffic.sent, f"every syslog line of {traffic.run_id} searchable", timeout=timeout, every=5)
    except AssertionError as error:
        raise AssertionError(f"{error}: sent {traffic.sent}, searchable {counts()}") from None
