"""rsyslog (Debian's rsyslogd and omelasticsearch) with roles/log_agent's configuration as Ansible
renders it, shipping a file into BK LOG through gunicorn while BK LOG refuses most batches for now
(the index set's rate limit: 429). omelasticsearch reads the items of a reply, never its status:
every line must arrive once, with the fields it was first sent with, and nothing may land in the
error file. (The same configuration through a rolling upgrade and the loss of a database host:
molecule/ha/tests.)"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from waiting import search, wait_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "service"))

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


def _render(tmp: Path, port: int, token: str, log_dir: Path, spool: Path, error_file: Path) -> Path:
    """The role's template through Ansible itself (filters, ansible_managed), with these values."""
    variables = {"log_agent_server": "127.0.0.1", "log_agent_port": port, "log_agent_use_https": False,
                 "log_agent_index_set": "app", "log_agent_ingest_token": token,
                 "log_agent_files": [{"path": f"{log_dir}/*.log", "tag": "app"}],
                 "log_agent_queue_size": 100000, "log_agent_queue_max_disk": "100m", "log_agent_spool_dir": str(spool),
                 "log_agent_retry_interval": 1, "log_agent_batch_lines": 1000, "log_agent_batch_wait_ms": 200,
                 "log_agent_error_file": str(error_file)}
    (tmp / "vars.json").write_text(json.dumps(variables))
    config = tmp / "60-bklog.conf"
    template = ROOT / "roles" / "log_agent" / "templates" / "etc" / "rsyslog.d" / "60-bklog.conf.j2"
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-o",
                           "-m", "ansible.builtin.template", "-a", f"src={template} dest={config}",
                           "-e", f"@{tmp / 'vars.json'}"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ANSIBLE_LOCALHOST_WARNING": "false"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return config


@contextlib.contextmanager
def _rsyslogd(tmp: Path, port: int, token: str):
    """rsyslogd with the role's configuration, shipping tmp/logs/*.log to 127.0.0.1:port; yields
    (the log directory, log_agent_error_file), stops it after and prints the end of its output."""
    logs, spool = tmp / "logs", tmp / "spool"
    logs.mkdir()
    spool.mkdir()
    error_file = tmp / "refused.json"
    config = _render(tmp, port, token, logs, spool, error_file)
    out = open(tmp / "rsyslogd.log", "w")
    rsyslogd = subprocess.Popen([RSYSLOGD, "-n", "-f", str(config), "-i", str(tmp / "rsyslogd.pid")],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield logs, error_file
    finally:
        os.killpg(rsyslogd.pid, signal.SIGTERM)
        rsyslogd.wait(timeout=30)
        out.close()
        print((tmp / "rsyslogd.log").read_text()[-3000:])


@pytest.mark.skipif(not Path(RSYSLOGD).exists(), reason="rsyslog is installed by scripts/setup.sh")
def test_rsyslog_ships_every_line_once_while_bklog_refuses_for_now(tmp_path):
    from e2e_stack import Stack

    stack = Stack(tmp_path / "bklog", None, BKLOG_INGEST_RATE_WINDOW_SECONDS="2")
    token = stack.bklog("create_index_set", "app")
    api = stack.bklog("create_api_token", "ops")
    stack.bklog("rate_limit", "app", "5")  # 10 lines per 2 s window: most batches below are refused
    stack.start_gunicorn()
    try:
        with _rsyslogd(tmp_path, stack.port, token) as (logs, error_file):
            with (logs / "app.log").open("a") as app_log:
                for i in range(120):  # 30 lines a second, for 4 s
                    app_log.write(f"shipped line {i} order={i}\n")
                    app_log.flush()
                    time.sleep(1 / 30)
            wait_until(lambda: search(stack, api, "q=shipped&size=1")["total"] >= 120, "all 120 lines", 120)
            time.sleep(5)  # anything sent twice would have arrived by now
            assert search(stack, api, "q=shipped&size=1")["total"] == 120  # every line, once
            refused = stack.log("gunicorn").count('/_bulk HTTP/1.1" 429')
            assert refused >= 3, "the rate limit refused no batch: the retry path was not exercised"
            # Lines that went through the retry path keep their fields: host, program, time.
            host = socket.gethostname()
            assert search(stack, api, f"q=shipped&field.host={host}&field.program=app&size=1")["total"] == 120
            hits = {hit["message"] for hit in search(stack, api, "q=shipped&size=200")["hits"]}
            assert hits == {f"shipped line {i} order={i}" for i in range(120)}
            assert not error_file.exists() or error_file.read_text() == ""
    finally:
        stack.close()


class AnswerDroppingProxy:
    """Between rsyslog and gunicorn: passes each HTTP request on and reads gunicorn's answer, but
    for the first `drop` `_bulk` requests closes rsyslog's connection instead of answering: the
    batch is stored and rsyslog never hears it was (what a balancer's timeout, or a database
    failover between the commit and its answer, does). A test double for that network fault only."""

    def __init__(self, backend_port: int, drop: int):
        self.backend_port, self.drop, self.dropped = backend_port, drop, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _read_message(sock, reader) -> bytes | None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = reader.readline()
            if not line:
                return None
            head += line
        length = next((int(h.split(b":", 1)[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")), 0)
        if b"expect: 100-continue" in head.lower():  # libcurl waits for this before a large body
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            head = b"\r\n".join(h for h in head.split(b"\r\n") if not h.lower().startswith(b"expect:"))
        return head + reader.read(length)

    def _serve(self, client):
        with client, socket.create_connection(("127.0.0.1", self.backend_port)) as backend:
            from_client, from_backend = client.makefile("rb"), backend.makefile("rb")
            while (request := self._read_message(client, from_client)) is not None:
                backend.sendall(request)
                answer = self._read_message(backend, from_backend)
                if answer is None:
                    return
                if b"/_bulk" in request.split(b"\r\n", 1)[0] and self.dropped < self.drop:
                    self.dropped += 1
                    return  # stored; the answer never reaches rsyslog
                client.sendall(answer)

    def close(self):
        self.server.close()


@pytest.mark.skipif(not Path(RSYSLOGD).exists(), reason="rsyslog is installed by scripts/setup.sh")
def test_a_batch_whose_answer_was_lost_is_stored_once(tmp_path):
    """rsyslog sends a batch again when its answer never came; each line's document id (made once,
    kept in the queue) makes BK LOG answer 409 for the lines it already has, so none is doubled."""
    from e2e_stack import Stack

    stack = Stack(tmp_path / "bklog", None)
    token = stack.bklog("create_index_set", "app")
    api = stack.bklog("create_api_token", "ops")
    stack.start_gunicorn()
    proxy = AnswerDroppingProxy(stack.port, drop=2)
    try:
        with _rsyslogd(tmp_path, proxy.port, token) as (logs, error_file):
            with (logs / "app.log").open("a") as app_log:
                for i in range(60):
                    app_log.write(f"answered line {i}\n")
                    app_log.flush()
                    time.sleep(1 / 30)
            wait_until(lambda: proxy.dropped == 2 and search(stack, api, "q=answered&size=1")["total"] >= 60,
                       "all 60 lines", 120)
            time.sleep(5)  # anything sent twice would have arrived by now
            hits = [hit["message"] for hit in search(stack, api, "q=answered&size=200")["hits"]]
            assert sorted(hits) == sorted(f"answered line {i}" for i in range(60))  # every line, once
            assert stack.log("gunicorn").count('/_bulk HTTP/1.1" 200') >= 3  # the dropped two, and their resend
            assert not error_file.exists() or error_file.read_text() == ""
    finally:
        proxy.close()
        stack.close()
