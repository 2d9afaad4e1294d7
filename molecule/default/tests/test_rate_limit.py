"""playbooks/rate_limit.yml on the deployed hosts (the guide's emergency plan: slow the producers
during a backlog): the cap applies through nginx at once, with 429 and Retry-After past it; a
second run changes nothing; `off` lifts it. Each host here is its own installation."""

from __future__ import annotations

import re
import time

import testinfra

from playbooks import changed_per_host, inventory_hosts, run_playbook


def curl_ingest(host, token: str, name: str, lines: int) -> tuple[str, str]:
    body = "\n".join(f"rate limited line {i}" for i in range(lines))
    out = host.check_output("printf %s | curl -sS -o /dev/null -D - -X POST -H %s --data-binary @- "
                            f"https://localhost/api/v1/index_sets/{name}/ingest", body, f"Authorization: Bearer {token}")
    status = re.search(r"^HTTP/\S+ (\d+)", out, re.M).group(1)
    retry_after = re.search(r"^retry-after: (\d+)", out, re.M | re.I)
    return status, retry_after.group(1) if retry_after else ""


def test_the_playbook_caps_ingest_and_lifts_the_cap():
    name = f"capped{int(time.time())}"
    hosts = {h: testinfra.get_host(f"podman://{h}") for h in inventory_hosts("bklog_api")}
    tokens = {h: host.check_output(f"bklog create_index_set {name}") for h, host in hosts.items()}
    # 1 line/s over the default 10 s window: 10 lines, then the window is spent.
    run = run_playbook("rate_limit.yml", "-e", f"bklog_rate_limit_index_set={name}",
                       "-e", "bklog_rate_limit_lines_per_second=1", timeout=300)
    assert run.returncode == 0 and f"{name} changed 1" in run.stdout, run.stdout[-3000:]
    again = run_playbook("rate_limit.yml", "-e", f"bklog_rate_limit_index_set={name}",
                         "-e", "bklog_rate_limit_lines_per_second=1", timeout=300)
    assert again.returncode == 0 and set(changed_per_host(again).values()) == {0}, again.stdout[-3000:]
    for h, host in hosts.items():
        # A window may turn between two requests: try until one is refused within a window.
        for _ in range(3):
            first = curl_ingest(host, tokens[h], name, 10)
            second = curl_ingest(host, tokens[h], name, 1)
            if second[0] == "429":
                break
        assert first[0] in ("200", "202") and second[0] == "429" and 1 <= int(second[1]) <= 10, (h, first, second)
    lifted = run_playbook("rate_limit.yml", "-e", "bklog_rate_limit_index_set=all",
                          "-e", "bklog_rate_limit_lines_per_second=off", timeout=300)
    assert lifted.returncode == 0 and f"{name} changed off" in lifted.stdout, lifted.stdout[-3000:]
    for h, host in hosts.items():
        assert curl_ingest(host, tokens[h], name, 50)[0] in ("200", "202"), h
