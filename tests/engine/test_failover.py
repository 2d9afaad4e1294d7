"""The service through a failover of its database and of its broker, with the real engines.

- PostgreSQL: three nodes under Patroni (Debian's package) with a Consul agent as its store, in
  synchronous mode, as roles/postgresql builds them on hosts. gunicorn serves ingest with the
  three hosts in DATABASE_URL; the primary is killed (SIGKILL to Patroni and its PostgreSQL, no
  warning) while a client ingests: a replica is primary within 30 s, requests fail only inside
  that window and only with a 503 carrying Retry-After, every line answered 2xx is searchable
  exactly once, and the killed node started again rejoins as a replica (pg_rewind).
- Redis: a master, two replicas and three sentinels (quorum two), password-protected, TLS on every
  connection (clients, replication, sentinel to sentinel; roles/redis's redis_tls_enabled); the API
  and a Celery worker reach it through REDIS_URL's sentinel:// list with BKLOG_REDIS_TLS_CA,
  verifying each certificate and the address it was reached at. The master is killed during
  ingest: the same figures, and every accepted batch is indexed (a task lost with the master is
  sent again by requeue_pending_batches).
- PgBouncer through a promotion: roles/postgresql's Patroni callback, rendered from the role, makes
  the pool of a promoted standby forget its in_hot_standby=on (see that test).

Here the "hosts" are processes on loopback (one machine): what is real is the engines and the
service; the fleet-wide proof with killed hosts lives in the molecule scenarios. A real Prometheus
scrapes Patroni and the sentinels (through redis_exporter) and evaluates the shipped alert rules:
the failover alerts fire from what the engines really export.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "service"))

from servers import _pg_bin, free_port, start_pgbouncer, stop  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("patroni") or not shutil.which("redis-sentinel"),
                                reason="needs root, patroni, python3-consul and redis-sentinel (scripts/setup.sh)")


def _get(url: str, timeout: float = 2) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


class Processes:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], user: str | None = None):
        if user:
            args = ["runuser", "-u", user, "--", *args]
        log = open(self.tmp / f"{name}.log", "a")
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, name: str):
        """SIGKILL to the process and everything it started (a host lost without a word)."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def close(self):
        for name in list(self.procs):
            try:
                self.kill(name)
            except ProcessLookupError:
                pass

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")


@pytest.fixture
def processes(tmp_path):
    tmp_path.chmod(0o755)
    procs = Processes(tmp_path)
    yield procs
    procs.close()


@pytest.fixture(scope="module")
def consul_binary() -> str:
    proc = subprocess.run([str(ROOT / "scripts" / "build-consul.sh")], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


class Load:
    """One client ingesting a numbered line per request, as fast as answers come; every answer
    kept with its time."""

    def __init__(self, stack, token: str, word: str):
        self.stack, self.token, self.word = stack, token, word
        self.results: list[tuple[float, int, int, str | None]] = []  # (time, seq, status, Retry-After)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        seq = 0
        while not self._stop.is_set():
            seq += 1
            request = urllib.request.Request(
                f"{self.stack.url}/api/v1/index_sets/app/ingest", data=f"{self.word} seq-{seq}".encode(),
                method="POST", headers={"Authorization": f"Bearer {self.token}", "Content-Type": "text/plain"})
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    status, retry_after = resp.status, resp.headers.get("Retry-After")
            except urllib.error.HTTPError as exc:
                status, retry_after = exc.code, exc.headers.get("Retry-After")
            except OSError:
                status, retry_after = 0, None
            self.results.append((time.monotonic(), seq, status, retry_after))
            if status != 202 and status != 200:
                time.sleep(0.2)  # as a shipper backs off

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=60)

    def accepted(self) -> set[int]:
        return {seq for _, seq, status, _ in self.results if status in (200, 202)}

    def failures(self) -> list[tuple[float, int, int, str | None]]:
        return [r for r in self.results if r[2] not in (200, 202)]

    def whole_again(self, since: float) -> float:
        """When requests succeeded again for good: the first success after the last failure."""
        last_failure = max((r[0] for r in self.failures()), default=since)
        return next(t for t, _, status, _ in self.results if t >= last_failure and status in (200, 202))

    def wait_for_answers(self, count: int, timeout: float = 60):
        start = len(self.accepted())
        wait_until(lambda: len(self.accepted()) >= start + count, f"{count} more accepted ingests", timeout)


def _searchable(stack, api_token: str, word: str) -> list[str]:
    status, body = stack.get(f"/api/v1/index_sets/app/search?q={word}&size=1000", api_token)
    assert status == 200, body
    return [hit["message"] for hit in json.loads(body)["hits"]]


def _report(what: str, load: Load, lost_at: float, whole_at: float):
    failures = load.failures()
    print(f"\n{what}: service whole again {whole_at - lost_at:.1f} s after the kill; {len(failures)} of "
          f"{len(load.results)} requests failed ({sorted({f[2] for f in failures})}), over "
          f"{(failures[-1][0] - failures[0][0]) if failures else 0:.1f} s")


def _lose_under_load(stack, token: str, word: str, kill, promoted, what: str) -> Load:
    """Ingest under load, kill() the leader, wait until promoted() names a new one, ingest on;
    the figures printed, every refusal a 503 with Retry-After inside the window."""
    with Load(stack, token, word) as load:
        load.wait_for_answers(30)
        lost = kill()
        lost_at = time.monotonic()
        new = wait_until(promoted, "a new leader", 60)
        promoted_at = time.monotonic()
        load.wait_for_answers(30)
    _report(f"{what} {lost} killed, {new} promoted after {promoted_at - lost_at:.1f} s", load, lost_at,
            load.whole_again(lost_at))
    assert promoted_at - lost_at < 30
    for when, _, status, retry_after in load.failures():
        assert status == 503 and retry_after, (status, retry_after)
        assert lost_at - 1 <= when <= promoted_at + 10, "a request failed outside the failover window"
    return load


def _stored_once(stack, api: str, word: str, load: Load) -> set[int]:
    """The numbers of the lines stored, each once; none that nobody sent (a request cut off by the
    kill may have committed before its answer was lost: the client saw an error, stored anyway)."""
    messages = _searchable(stack, api, word)
    assert len(messages) == len(set(messages)), "a line was stored twice"
    stored = {int(m.rsplit("-", 1)[1]) for m in messages}
    assert stored - load.accepted() <= {seq for _, seq, _, _ in load.failures()}
    return stored


# ---------------------------------------------------------------------------- PostgreSQL/Patroni

PATRONI_TTL = 20  # Patroni's least: the leader key lives this long without its holder


def _patroni_config(tmp: Path, name: str, pg_port: int, rest_port: int, consul_port: int) -> Path:
    import yaml

    data = tmp / name
    config = {
        "scope": "bklog-test", "namespace": "/service/", "name": name,
        "restapi": {"listen": f"127.0.0.1:{rest_port}", "connect_address": f"127.0.0.1:{rest_port}"},
        "consul": {"host": f"127.0.0.1:{consul_port}", "register_service": False},
        "bootstrap": {
            "dcs": {"ttl": PATRONI_TTL, "loop_wait": 2, "retry_timeout": 5, "synchronous_mode": True,
                    "maximum_lag_on_failover": 1048576,
                    "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                   "parameters": {"wal_log_hints": "on", "max_connections": 60}}},
            "initdb": [{"encoding": "UTF8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{pg_port}", "connect_address": f"127.0.0.1:{pg_port}",
            "data_dir": str(data / "data"), "bin_dir": str(_pg_bin()), "pgpass": str(data / "pgpass"),
            "authentication": {"superuser": {"username": "postgres", "password": "super-secret"},
                               "replication": {"username": "replicator", "password": "repl-secret"},
                               "rewind": {"username": "postgres", "password": "super-secret"}},
            "parameters": {"unix_socket_directories": str(data)},
            "pg_hba": ["local all all trust", "host replication replicator 127.0.0.1/32 md5",
                       "host all all 127.0.0.1/32 md5"],
        },
    }
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    path = data / "patroni.yml"
    path.write_text(yaml.safe_dump(config))
    shutil.chown(path, "postgres", "postgres")
    path.chmod(0o600)
    return path


def _kill_member(processes: Processes, base: Path, name: str):
    """As if its host were lost: Patroni and its PostgreSQL (which Patroni starts in a session of
    its own, so that it outlives Patroni: killing Patroni alone leaves a primary running)."""
    pid = int((base / name / "data" / "postmaster.pid").read_text().split()[0])
    processes.kill(name)
    os.killpg(os.getpgid(pid), signal.SIGKILL)


def _roles(rest_ports: dict[str, int]) -> dict[str, str]:
    """Each node's role as its own REST API says: primary (GET /primary is 200), replica
    (GET /replica is 200: streaming and healthy), or down."""
    roles = {}
    for name, port in rest_ports.items():
        if _get(f"http://127.0.0.1:{port}/primary")[0] == 200:
            roles[name] = "primary"
        elif _get(f"http://127.0.0.1:{port}/replica")[0] == 200:
            roles[name] = "replica"
        else:
            roles[name] = "down"
    return roles


@pytest.fixture
def postgres_dir():
    """A directory the postgres user can reach (pytest's own sit under root's 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="bklog-patroni-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_patroni_failover_loses_no_accepted_line(processes, tmp_path, postgres_dir, consul_binary):
    from e2e_stack import Stack

    consul_http = free_port()
    ports = {p: free_port() for p in ("dns", "serf_lan", "serf_wan", "server", "grpc")}
    processes.start("consul", [consul_binary, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
                               "-http-port", str(consul_http), "-dns-port", "-1", "-grpc-port", "-1",
                               "-serf-lan-port", str(ports["serf_lan"]), "-serf-wan-port", str(ports["serf_wan"]),
                               "-server-port", str(ports["server"])])
    wait_until(lambda: _get(f"http://127.0.0.1:{consul_http}/v1/status/leader")[1].strip(b'"\n'), "consul leader", 30)

    nodes = {f"pg{i}": (free_port(), free_port()) for i in (1, 2, 3)}
    rest = {name: rest_port for name, (_, rest_port) in nodes.items()}
    configs = {name: _patroni_config(postgres_dir, name, pg, rp, consul_http) for name, (pg, rp) in nodes.items()}
    for name, config in configs.items():
        processes.start(name, ["patroni", str(config)], user="postgres")
        if name == "pg1":  # the first bootstraps the cluster; the others clone it
            wait_until(lambda: _roles({"pg1": rest["pg1"]})["pg1"] == "primary", "pg1 primary", 90)
    wait_until(lambda: sorted(_roles(rest).values()) == ["primary", "replica", "replica"], "two streaming replicas", 120)
    prometheus = _prometheus(processes, tmp_path, [{"job_name": "patroni", "static_configs": [
        {"targets": [f"127.0.0.1:{port}" for port in rest.values()]}]}])
    # What the PostgreSQL alerts read, as Patroni exports it: one primary, every member running.
    # (Each member is scraped on its own schedule: wait until all three have been, then read.)
    wait_until(lambda: len(_query(prometheus, 'up{job="patroni"} == 1')) == 3, "all three members scraped", 60)
    wait_until(lambda: [r["value"][1] for r in _query(prometheus, 'sum by (scope) (patroni_primary{job="patroni"})')] == ["1"],
          "Patroni's metrics scraped: one primary", 30)
    assert len(_query(prometheus, 'patroni_postgres_running{job="patroni"} == 1')) == 3
    assert len(_query(prometheus, 'patroni_xlog_replayed_location{job="patroni"} and on (instance) patroni_replica == 1')) == 2

    hosts = ",".join(f"127.0.0.1:{pg}" for pg, _ in nodes.values())
    url = f"postgres://postgres:super-secret@{hosts}/bklog"
    subprocess.run([sys.executable, "-c", "import psycopg,sys; c=psycopg.connect(sys.argv[1], autocommit=True, "
                    "target_session_attrs='read-write'); c.execute('CREATE DATABASE bklog')",
                    url.replace("/bklog", "/postgres")], check=True)
    stack = Stack(tmp_path / "bklog", None, DATABASE_URL=url)
    token = stack.bklog("create_index_set", "app")
    api = stack.bklog("create_api_token", "ops")
    stack.start_gunicorn()
    try:
        def kill_primary() -> str:
            primary = next(name for name, role in _roles(rest).items() if role == "primary")
            _kill_member(processes, postgres_dir, primary)
            return primary

        primary_of = lambda: next((n for n, r in _roles(rest).items() if r == "primary"), None)  # noqa: E731
        primary = primary_of()
        load = _lose_under_load(stack, token, "pgfailover", kill_primary, primary_of, "PostgreSQL primary")
        new_primary = primary_of()
        stored = _stored_once(stack, api, "pgfailover", load)
        assert load.accepted() <= stored, f"lines answered 2xx are missing: {sorted(load.accepted() - stored)}"

        # The alerts, from the real metrics: the new timeline says a failover happened; the lost
        # member is down until it is back; there is a primary again.
        # (MemberDown waits out its minute: active is enough here.)
        wait_until(lambda: _alerts(prometheus).get("BklogPostgresFailover") == "firing"
              and "BklogPostgresMemberDown" in _alerts(prometheus), "BklogPostgresFailover and BklogPostgresMemberDown", 60)
        assert "BklogPostgresNoPrimary" not in _alerts(prometheus)

        # The lost node comes back: Patroni rewinds it and it follows the new primary.
        processes.start(primary, ["patroni", str(configs[primary])], user="postgres")
        wait_until(lambda: _roles(rest) == {n: "primary" if n == new_primary else "replica" for n in rest},
              f"{primary} back as a replica of {new_primary}", 120)
    finally:
        stack.close()


def test_pgbouncer_forgets_the_standby_when_its_member_is_promoted(postgres_dir):
    """roles/postgresql's Patroni callback (bklog-pgbouncer-reconnect), rendered from the role and
    run as Patroni runs it on a promotion: right after `pg_ctl promote -W`, before the promotion
    ends. A client that reaches the member's PgBouncer in that window makes its pool remember the
    standby's in_hot_standby=on, which PgBouncer then hands every new client: libpq's
    target_session_attrs=read-write would refuse the new primary ("session is read-only") until
    the next role change (molecule/ha's kill of the primary's host, twice on a loaded machine).
    Here a primary, its streaming standby and PgBouncer in front of the standby (a replica's
    host); Patroni itself is not needed to hold the window open, so the test opens it by hand."""
    import jinja2
    import psycopg

    bindir, sockets = _pg_bin(), postgres_dir
    shutil.chown(sockets, "postgres", "postgres")
    primary, standby = free_port(), free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True)

    def pg_start(name: str, port: int) -> None:
        as_postgres(str(bindir / "pg_ctl"), "-D", str(sockets / name), "-l", str(sockets / f"{name}.log"), "-w", "start",
                    "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off")

    as_postgres(str(bindir / "initdb"), "-D", str(sockets / "primary"), "-U", "postgres", "--auth=trust", "--no-sync")
    pg_start("primary", primary)
    try:
        as_postgres(str(bindir / "createdb"), "-h", str(sockets), "-p", str(primary), "-U", "postgres", "bklog")
        as_postgres(str(bindir / "pg_basebackup"), "-h", str(sockets), "-p", str(primary), "-U", "postgres",
                    "-D", str(sockets / "standby"), "-R", "--checkpoint=fast")
        pg_start("standby", standby)
        bouncer_url = start_pgbouncer(sockets, f"postgres://postgres@127.0.0.1:{standby}/bklog", admin_users="postgres")
        bouncer = int(bouncer_url.rsplit(":", 1)[1].split("/")[0])
        url = f"host=127.0.0.1 port={bouncer} dbname=bklog user=postgres"
        wait_until(lambda: _connects(url), "PgBouncer in front of the standby", 30)

        template = ROOT / "roles/postgresql/templates/usr/local/bin/bklog-pgbouncer-reconnect.j2"
        callback = sockets / "bklog-pgbouncer-reconnect"
        callback.write_text(jinja2.Template(template.read_text()).render(**{
            "ansible_managed": "test", "__postgresql_socket_dir": str(sockets), "postgresql_port": standby,
            "postgresql_pgbouncer_port": bouncer, "postgresql_database": "bklog",
            "postgresql_pgbouncer_reconnect_timeout": 60}))
        callback.chmod(0o755)

        # A client of the standby's PgBouncer, idle: the callback's first KILL drops it.
        idle = psycopg.connect(url, autocommit=True)
        running = subprocess.Popen(["runuser", "-u", "postgres", "--", str(callback), "on_role_change", "promoted", "bklog"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_until(lambda: not _still_connected(idle), "the callback's first KILL", 30, every=0.05)
        # The window: a client arrives while the standby still replays; the pool logs in anew.
        with psycopg.connect(url, autocommit=True) as early:
            assert early.info.parameter_status("in_hot_standby") == "on"
        as_postgres(str(bindir / "pg_ctl"), "-D", str(sockets / "standby"), "-w", "promote")
        output, _ = running.communicate(timeout=90)
        assert running.returncode == 0, output

        with psycopg.connect(url, autocommit=True, target_session_attrs="read-write") as client:
            assert client.info.parameter_status("in_hot_standby") == "off"
            client.execute("CREATE TABLE written_after_the_promotion (id int)")
    finally:
        stop(sockets)  # PgBouncer
        for name in ("standby", "primary"):
            if (sockets / name / "postmaster.pid").exists():
                subprocess.run(["runuser", "-u", "postgres", "--", str(bindir / "pg_ctl"), "-D", str(sockets / name),
                                "-m", "immediate", "stop"], capture_output=True)


def _connects(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=2).close()
        return True
    except psycopg.OperationalError:
        return False


def _still_connected(conn) -> bool:
    import psycopg

    try:
        conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


# ------------------------------------------------------------------------------- alerts

def _prometheus(processes: Processes, tmp: Path, scrape_configs: list[dict]) -> int:
    """A real Prometheus (Debian's) on loopback, scraping every second and evaluating the shipped
    rules (monitoring/bklog-alerts.yml): the HA alerts are checked against what the real engines
    export, not only against promtool's made-up series."""
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(json.dumps({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                  "rule_files": [str(ROOT / "monitoring" / "bklog-alerts.yml")],
                                  "scrape_configs": scrape_configs}))
    processes.start("prometheus", ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                   f"--web.listen-address=127.0.0.1:{port}"])
    wait_until(lambda: _get(f"http://127.0.0.1:{port}/-/ready")[0] == 200, "Prometheus ready", 60)
    return port


def _query(port: int, expr: str) -> list[dict]:
    status, body = _get(f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return json.loads(body)["data"]["result"] if status == 200 else []


def _alerts(port: int) -> dict[str, str]:
    """Each active alert's state: pending (waiting out its `for`) or firing."""
    status, body = _get(f"http://127.0.0.1:{port}/api/v1/alerts")
    alerts = json.loads(body)["data"]["alerts"] if status == 200 else []
    return {a["labels"]["alertname"]: a["state"] for a in alerts}


# ------------------------------------------------------------------------------- Redis/Sentinel

REDIS_PASSWORD = "redis-secret"
# The CA and the certificate every Redis and sentinel serves (made by the test below).
REDIS_TLS: dict[str, Path] = {}


def _tls_certificates(tmp: Path) -> dict[str, Path]:
    """A throwaway CA and one server certificate naming 127.0.0.1, where every member listens."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    files = {name: tmp / f"{name}" for name in ("ca.key", "ca.crt", "redis.key", "redis.csr", "redis.crt", "ext")}
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=bklog test CA", "-keyout", str(files["ca.key"]), "-out", str(files["ca.crt"]))
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=redis",
            "-keyout", str(files["redis.key"]), "-out", str(files["redis.csr"]))
    files["ext"].write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", str(files["redis.csr"]), "-CA", str(files["ca.crt"]), "-CAkey", str(files["ca.key"]),
            "-CAcreateserial", "-days", "2", "-extfile", str(files["ext"]), "-out", str(files["redis.crt"]))
    return files


def _tls_args(files: dict[str, Path]) -> list[str]:
    """Redis's TLS settings as roles/redis writes them: no plain port, replication over TLS."""
    return ["--tls-cert-file", str(files["redis.crt"]), "--tls-key-file", str(files["redis.key"]),
            "--tls-ca-cert-file", str(files["ca.crt"]), "--tls-auth-clients", "no", "--tls-replication", "yes"]


def _redis_cli(port: int, *words: str) -> str:
    proc = subprocess.run(["redis-cli", "--tls", "--cacert", str(REDIS_TLS["ca.crt"]), "-h", "127.0.0.1", "-p", str(port),
                           "--no-auth-warning", "-a", REDIS_PASSWORD, *words], capture_output=True, text=True, timeout=10)
    return proc.stdout.strip()


def test_sentinel_failover_loses_no_accepted_batch(processes, tmp_path):
    from e2e_stack import Stack

    REDIS_TLS.update(_tls_certificates(tmp_path))
    redis_ports = [free_port() for _ in range(3)]
    sentinel_ports = [free_port() for _ in range(3)]
    for i, port in enumerate(redis_ports):
        args = ["redis-server", "--port", "0", "--tls-port", str(port), *_tls_args(REDIS_TLS), "--bind", "127.0.0.1",
                "--requirepass", REDIS_PASSWORD, "--masterauth", REDIS_PASSWORD, "--save", "", "--appendonly", "no",
                "--dir", str(tmp_path)]
        if i:
            args += ["--replicaof", "127.0.0.1", str(redis_ports[0])]
        processes.start(f"redis{i}", args)
    for i, port in enumerate(sentinel_ports):
        config = tmp_path / f"sentinel{i}.conf"
        tls = "".join(f"{key.removeprefix('--')} {value}\n" for key, value in zip(_tls_args(REDIS_TLS)[::2], _tls_args(REDIS_TLS)[1::2]))
        config.write_text(f"port 0\ntls-port {port}\n{tls}bind 127.0.0.1\ndir {tmp_path}\n"
                          f"sentinel monitor bklog 127.0.0.1 {redis_ports[0]} 2\n"
                          f"sentinel auth-pass bklog {REDIS_PASSWORD}\n"
                          "sentinel down-after-milliseconds bklog 2000\n"
                          "sentinel failover-timeout bklog 10000\n"
                          f"requirepass {REDIS_PASSWORD}\nsentinel sentinel-pass {REDIS_PASSWORD}\n")
        processes.start(f"sentinel{i}", ["redis-sentinel", str(config)])

    def master_port() -> int | None:
        answer = _redis_cli(sentinel_ports[0], "SENTINEL", "get-master-addr-by-name", "bklog").split()
        return int(answer[1]) if len(answer) == 2 else None

    def replicas_in_sync() -> bool:
        return _redis_cli(redis_ports[0], "INFO", "replication").count("state=online") == 2

    wait_until(replicas_in_sync, "two replicas online", 30)
    wait_until(lambda: _redis_cli(sentinel_ports[0], "SENTINEL", "ckquorum", "bklog").startswith("OK 3"),
          "three sentinels in quorum", 30)

    # Each sentinel through redis_exporter (Debian's), as roles/monitoring scrapes them.
    exporter = free_port()
    processes.start("redis-exporter", ["prometheus-redis-exporter", "-redis.password", REDIS_PASSWORD,
                                       "-tls-ca-cert-file", str(REDIS_TLS["ca.crt"]),
                                       "-web.listen-address", f"127.0.0.1:{exporter}"])
    prometheus = _prometheus(processes, tmp_path, [{
        "job_name": "redis_sentinel", "metrics_path": "/scrape",
        "static_configs": [{"targets": [f"rediss://127.0.0.1:{port}" for port in sentinel_ports]}],
        "relabel_configs": [{"source_labels": ["__address__"], "target_label": "__param_target"},
                            {"source_labels": ["__param_target"], "target_label": "instance"},
                            {"target_label": "__address__", "replacement": f"127.0.0.1:{exporter}"}]}])
    wait_until(lambda: [r["value"][1] for r in _query(prometheus, 'redis_sentinel_master_ok_sentinels{job="redis_sentinel"}')]
          == ["3", "3", "3"], "every sentinel scraped, each seeing three", 30)
    wait_until(lambda: [r["value"][1] for r in _query(prometheus, 'redis_sentinel_master_ok_slaves{job="redis_sentinel"}')]
          == ["2"] * 3, "every sentinel seeing both replicas", 30)

    url = ";".join(f"sentinel://:{REDIS_PASSWORD}@127.0.0.1:{port}/0" for port in sentinel_ports)
    stack = Stack(tmp_path / "bklog", url, BKLOG_REDIS_SENTINEL_MASTER="bklog", BKLOG_REDIS_TLS_CA=str(REDIS_TLS["ca.crt"]))
    token = stack.bklog("create_index_set", "app")
    api = stack.bklog("create_api_token", "ops")
    stack.start_gunicorn()
    stack.start_worker()
    try:
        old_master = master_port()

        def kill_master() -> str:
            processes.kill(f"redis{redis_ports.index(old_master)}")
            return f":{old_master}"

        load = _lose_under_load(stack, token, "redisfailover", kill_master,
                                lambda: (port := master_port()) != old_master and port, "Redis master")
        new_master = master_port()

        # A task queued just before the master died may be gone with it (replication is
        # asynchronous): the batch is still pending in the database, and the safety net sends it.
        accepted = load.accepted()
        stack.bklog("shell", "-c", "from bklog.logs.tasks import requeue_pending_batches as r; print(r(0))")

        def every_line() -> bool:
            return accepted <= _stored_once(stack, api, "redisfailover", load)

        try:
            wait_until(every_line, "every accepted line searchable", 60)
        except AssertionError:
            print(stack.bklog("shell", "-c", "from bklog.logs.models import IngestBatch as B; "
                              "print(B.objects.filter(status='pending').count(), 'batches pending')"))
            print(stack.log("worker")[-6000:])
            raise
        # The sentinels named a second master address: the failover alert fires from the real metrics.
        wait_until(lambda: _alerts(prometheus).get("BklogRedisFailover") == "firing", "BklogRedisFailover firing", 60)

        # Django's cache follows the master too.
        out = stack.bklog("shell", "-c", "from django.core.cache import cache; cache.set('k', 'v', 60); "
                                         "print('cache', cache.get('k'))")
        assert out.splitlines()[-1] == "cache v", out
        assert _redis_cli(new_master, "EXISTS", ":1:k") == "1", "the cache did not write to the new master"

        # Nothing answers in clear, and a client that does not trust this CA is refused.
        plain = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(new_master), "--no-auth-warning",
                                "-a", REDIS_PASSWORD, "PING"], capture_output=True, text=True, timeout=10)
        assert "PONG" not in plain.stdout, plain
        from bklog import connections

        stranger = connections.redis_target(url, "bklog", "/etc/ssl/certs/ca-certificates.crt")
        with pytest.raises(Exception, match="(?i)certificate verify failed|No master found"):
            connections.redis_client(stranger).ping()
    finally:
        stack.close()
