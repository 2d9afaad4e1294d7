#!/usr/bin/env python3
"""One host's status for playbooks/status.yml, as one JSON document on stdout. Read-only, the
standard library only (runs on the host's python3, not the release's): the running release and the
ones kept, every bklog supervisor program's state and uptime, the local Consul agent's checks, the
broker's backlog per Celery queue, disk and memory use; and the problems found against thresholds.

    bklog_status_collect.py --root ROOT --env-file FILE --queues pipeline,default --state-command READER
        --program-prefix PREFIX --max-backlog N --max-disk-percent P --max-memory-percent P [--consul-url URL]

(roles/bklog_status/tasks/main.yml passes each from the role's variables.)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import socket
import ssl
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path


def release(root: Path) -> dict:
    current = root / "current"
    releases = sorted(p.name for p in (root / "releases").iterdir() if p.is_dir()) if (root / "releases").is_dir() else []
    running = os.path.basename(os.readlink(current)) if current.is_symlink() else None
    complete = (current / ".complete").is_file()
    return {"running": running, "complete": complete, "kept": releases}


def programs(state_command: str, prefix: str) -> list[dict]:
    """The supervisor role's state reader (supervisor-state --prefix): a line `NAME STATE PID UPTIME`
    per program whose name starts with prefix, exit 4 when supervisord does not answer."""
    try:
        done = subprocess.run([state_command, "--prefix", prefix], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [{"name": "supervisord", "state": "UNREACHABLE", "uptime": None, "detail": str(exc)}]
    if done.returncode != 0:
        detail = (done.stdout + done.stderr).strip()[:200]
        return [{"name": "supervisord", "state": "UNREACHABLE", "uptime": None, "detail": detail}]
    found = []
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        name, state, _pid, uptime = parts
        seconds = int(uptime) if uptime.isdigit() else 0
        found.append({"name": name, "state": state,
                      "uptime": str(datetime.timedelta(seconds=seconds)) if state == "RUNNING" else None,
                      "detail": ""})
    return found


def consul_checks(url: str) -> list[dict]:
    try:
        with urllib.request.urlopen(f"{url}/v1/agent/checks", timeout=5) as answer:
            checks = json.load(answer)
    except (OSError, ValueError) as exc:
        return [{"name": "consul agent", "service": "", "status": "unreachable", "output": str(exc)}]
    return [{"name": c["Name"], "service": c.get("ServiceName", ""), "status": c["Status"],
             "output": (c.get("Output") or "").strip()[:200]} for _, c in sorted(checks.items())]


def read_env(path: Path) -> dict:
    env = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                env[key.strip()] = (shlex.split(value) or [""])[0]
    return env


def _redis_command(sock, *words: str):
    sock.sendall(f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(w.encode())}\r\n".encode() + w.encode() + b"\r\n" for w in words))
    line = sock.makefile("rb").readline().decode().strip()
    if line.startswith("-"):
        raise RuntimeError(line[1:])
    return line[1:]


def _redis_login(address: tuple[str, int], password: str, username: str = "", tls: bool = False,
                 tls_ca: str = "") -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    if tls:  # as the service connects (BKLOG_REDIS_TLS_CA): the chain and the name or address verified
        sock = ssl.create_default_context(cafile=tls_ca or None).wrap_socket(sock, server_hostname=address[0])
    if password:
        _redis_command(sock, *(["AUTH", username, password] if username else ["AUTH", password]))
    return sock


def _sentinel_master(items: list[urllib.parse.ParseResult], master_name: str, tls_ca: str = "") -> tuple[str, int]:
    """The master's address as the first sentinel that answers names it."""
    problems = []
    for item in items:
        try:
            with _redis_login((item.hostname, item.port or 26379), urllib.parse.unquote(item.password or ""),
                              tls=bool(tls_ca), tls_ca=tls_ca) as sock:
                sock.sendall(f"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n${len(master_name)}\r\n"
                             f"{master_name}\r\n".encode())
                reply = sock.makefile("rb")
                if not reply.readline().startswith(b"*2"):
                    raise RuntimeError(f"knows no master named {master_name!r}")
                reply.readline()
                host = reply.readline().decode().strip()
                reply.readline()
                return host, int(reply.readline().decode().strip())
        except (OSError, RuntimeError, ValueError) as exc:
            problems.append(f"sentinel {item.hostname}:{item.port or 26379}: {exc}")
    raise RuntimeError("; ".join(problems) or "no sentinel in REDIS_URL")


def backlog(redis_url: str, queues: list[str], master_name: str = "bklog", tls_ca: str = "") -> dict:
    """LLEN of each queue's list on the broker (Celery's Redis transport keeps a queue in a list);
    with a Sentinel group, on the master the sentinels name."""
    if not redis_url:
        return {"error": "no broker: REDIS_URL is empty (embedded mode runs tasks inline)"}
    items = [urllib.parse.urlparse(item) for item in redis_url.split(";") if item.strip()]
    url = items[0]
    if url.scheme not in ("redis", "rediss", "sentinel"):
        return {"error": f"{url.scheme}:// brokers are not read by this report"}
    address = (url.hostname or "localhost", url.port or 6379)
    try:
        if url.scheme == "sentinel":
            address = _sentinel_master(items, master_name, tls_ca)
        with _redis_login(address, urllib.parse.unquote(url.password or ""), urllib.parse.unquote(url.username or ""),
                          tls=url.scheme == "rediss" or bool(tls_ca), tls_ca=tls_ca) as sock:
            db = (url.path or "/0").strip("/") or "0"
            _redis_command(sock, "SELECT", db)
            report = {"queues": {q: int(_redis_command(sock, "LLEN", q)) for q in queues}}
            if url.scheme == "sentinel":
                report["master"] = f"{address[0]}:{address[1]}"
            return report
    except (OSError, RuntimeError, ValueError) as exc:
        return {"error": f"broker {address[0]}:{address[1]} unreachable: {exc}"}


def resources(root: Path) -> dict:
    path = root if root.exists() else Path("/")
    fs = os.statvfs(path)
    total = fs.f_blocks * fs.f_frsize
    used_percent = round(100 * (total - fs.f_bavail * fs.f_frsize) / total, 1) if total else 0.0
    meminfo = {line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()}
    mem_total = meminfo["MemTotal"]
    mem_used = round(100 * (mem_total - meminfo.get("MemAvailable", meminfo["MemFree"])) / mem_total, 1)
    return {"disk_path": str(path), "disk_used_percent": used_percent, "memory_total_mb": mem_total // 1024,
            "memory_used_percent": mem_used}


def problems(report: dict, args) -> list[str]:
    found = []
    rel = report["release"]
    if not rel["running"]:
        found.append(f"no release is current under {args.root}")
    elif not rel["complete"]:
        found.append(f"release {rel['running']} is current but incomplete (no .complete)")
    for program in report["programs"]:
        if program["state"] != "RUNNING":
            found.append(f"{program['name']} is {program['state']} {program.get('detail', '')}".strip())
    if not report["programs"]:
        found.append("no bklog program is configured in supervisor")
    for check in report["consul_checks"]:
        if check["status"] != "passing":
            found.append(f"consul check {check['name']!r} is {check['status']}")
    queues = report["backlog"].get("queues", {})
    for queue, depth in queues.items():
        if depth > args.max_backlog:
            found.append(f"queue {queue} has {depth} messages waiting (more than {args.max_backlog})")
    if "error" in report["backlog"] and args.broker_required:
        found.append(report["backlog"]["error"])
    res = report["resources"]
    if res["disk_used_percent"] > args.max_disk_percent:
        found.append(f"disk {res['disk_path']} {res['disk_used_percent']}% used (more than {args.max_disk_percent}%)")
    if res["memory_used_percent"] > args.max_memory_percent:
        found.append(f"memory {res['memory_used_percent']}% used (more than {args.max_memory_percent}%)")
    return found


def main() -> None:
    # Every value comes from the role's variables (roles/bklog_status/defaults): none is typed here.
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--env-file", type=Path, required=True)
    parser.add_argument("--queues", default="")
    parser.add_argument("--state-command", required=True)
    parser.add_argument("--program-prefix", required=True)
    parser.add_argument("--consul-url", default="")
    parser.add_argument("--max-backlog", type=int, required=True)
    parser.add_argument("--max-disk-percent", type=float, required=True)
    parser.add_argument("--max-memory-percent", type=float, required=True)
    args = parser.parse_args()
    env = read_env(args.env_file)
    args.broker_required = bool(env.get("REDIS_URL"))
    report = {
        "release": release(args.root),
        "programs": programs(args.state_command, args.program_prefix),
        "consul_checks": consul_checks(args.consul_url) if args.consul_url else [],
        "backlog": backlog(env.get("REDIS_URL", ""), [q for q in args.queues.split(",") if q],
                           env.get("BKLOG_REDIS_SENTINEL_MASTER") or "bklog", env.get("BKLOG_REDIS_TLS_CA", "")),
        "resources": resources(args.root),
    }
    report["problems"] = problems(report, args)
    report["healthy"] = not report["problems"]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
