"""Real Redis, PostgreSQL and PgBouncer servers for the tests, from Debian's packages, on loopback.

    python tests/servers.py start DIR   -> prints `export VAR=...` lines (eval them)
    python tests/servers.py stop DIR

PostgreSQL refuses to run as root, so it runs as the `postgres` user the package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def start_redis(workdir: Path) -> str:
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("redis-server is not installed: apt-get install redis-server (scripts/setup.sh does)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    subprocess.run([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--daemonize", "yes", "--pidfile", str(workdir / "redis.pid"), "--dir", str(workdir),
                    "--logfile", str(workdir / "redis.log")], check=True)
    _wait_port(port)
    return f"redis://127.0.0.1:{port}/0"


def _pg_bin() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        raise RuntimeError("PostgreSQL server is not installed: apt-get install postgresql (scripts/setup.sh does)")
    return Path(candidates[-1]).parent


def _as_postgres(args: list[str], **kw) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return subprocess.run(args, check=True, **kw)


def start_postgres(workdir: Path) -> str:
    bindir = _pg_bin()
    data = workdir / "pgdata"
    workdir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    port = free_port()
    _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "bklog", "--auth=trust", "-E", "UTF8",
                  "--no-sync"], stdout=subprocess.DEVNULL)
    _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(workdir / "postgres.log"), "-w", "start",
                  "-o", f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
                        f"-c max_connections=200"], stdout=subprocess.DEVNULL)
    _wait_port(port)
    _as_postgres([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "bklog", "bklog"])
    return f"postgres://bklog@127.0.0.1:{port}/bklog"


def start_pgbouncer(workdir: Path, postgres_url: str, admin_users: str = "") -> str:
    """Debian's PgBouncer in transaction mode in front of that PostgreSQL, as the postgresql role
    runs it (a server connection serves one transaction, then another client): the service's
    PostgreSQL tests run through it. Every database name passes through (the tests make theirs).
    Its socket and files in workdir; admin_users may KILL and RESUME over that socket."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        raise RuntimeError("pgbouncer is not installed: apt-get install pgbouncer (scripts/setup.sh does)")
    workdir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    server = postgres_url.split("@", 1)[1].split("/", 1)[0]
    port = free_port()
    (workdir / "pgbouncer.ini").write_text(f"""[databases]
* = host={server.split(":")[0]} port={server.split(":")[1]}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {workdir}
auth_type = trust
auth_file = {workdir}/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
admin_users = {admin_users}
""")
    user = postgres_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[0]
    (workdir / "userlist.txt").write_text(f'"{user}" ""\n')
    _as_postgres([binary, "-d", str(workdir / "pgbouncer.ini")], stdout=subprocess.DEVNULL)
    _wait_port(port)
    return postgres_url.replace(f"@{server}/", f"@127.0.0.1:{port}/")


def stop(workdir: Path) -> None:
    pid_file = workdir / "redis.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().strip()), 15)
        except (ProcessLookupError, ValueError):
            pass
    pid_file = workdir / "pgbouncer.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().strip()), 15)
        except (ProcessLookupError, ValueError):
            pass
    if (workdir / "pgdata").exists():
        try:
            _as_postgres([str(_pg_bin() / "pg_ctl"), "-D", str(workdir / "pgdata"), "-m", "fast", "stop"],
                         stdout=subprocess.DEVNULL)
        except subprocess.CalledProcessError:
            pass


if __name__ == "__main__":
    command, directory = sys.argv[1], Path(sys.argv[2]).resolve()
    if command == "start":
        print(f"export BKLOG_TEST_REDIS_URL={start_redis(directory / 'redis')}")
        postgres_url = start_postgres(directory / "postgres")
        print(f"export BKLOG_TEST_POSTGRES_URL={postgres_url}")
        print(f"export BKLOG_TEST_PGBOUNCER_URL={start_pgbouncer(directory / 'pgbouncer', postgres_url)}")
    elif command == "stop":
        stop(directory / "pgbouncer")
        stop(directory / "redis")
        stop(directory / "postgres")
    else:
        sys.exit(f"usage: {sys.argv[0]} start|stop DIR")
