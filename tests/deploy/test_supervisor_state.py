"""The supervisor role's state reader (supervisor-state: curl over the control socket) and the
monitoring role's textfile writer that runs it, against a real supervisord started here: the lines
per program, the Consul check's exit codes, and what either says when supervisord is gone."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jinja2
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def supervisord(tmp_path: Path):
    socket = tmp_path / "supervisor.sock"
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"""[unix_http_server]
file={socket}
[supervisord]
logfile={tmp_path}/supervisord.log
pidfile={tmp_path}/supervisord.pid
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{socket}
[program:bklog-api]
command=sleep 600
[program:bklog-worker-pipeline]
command=sleep 600
autostart=false
""")
    subprocess.run([BIN / "supervisord", "-c", conf], check=True)
    reader = tmp_path / "supervisor-state"
    template = (ROOT / "roles/supervisor/templates/usr/local/sbin/supervisor-state.j2").read_text()
    reader.write_text(jinja2.Template(template).render(ansible_managed="test", supervisor_socket=socket))
    reader.chmod(0o755)
    for _ in range(100):
        if subprocess.run([reader, "bklog-api"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    yield reader, conf
    subprocess.run([BIN / "supervisorctl", "-c", conf, "shutdown"], capture_output=True)


def run(*args) -> tuple[int, str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    return done.returncode, done.stdout.strip()


@pytest.mark.skipif(not shutil.which("curl"), reason="the reader needs curl (the supervisor role installs it)")
def test_the_reader_lists_every_program_and_checks_one(supervisord):
    reader, conf = supervisord
    code, out = run(reader)
    api, worker = out.splitlines()
    pid = subprocess.run([BIN / "supervisorctl", "-c", conf, "pid", "bklog-api"],
                         capture_output=True, text=True).stdout.strip()
    assert code == 0 and re.fullmatch(rf"bklog-api RUNNING {pid} \d+", api), out
    assert worker == "bklog-worker-pipeline STOPPED 0 0", out
    # --prefix: the one filter of a role's own programs (several allowed; none matching is no line).
    assert run(reader, "--prefix", "bklog-worker-") == (0, worker)
    both = run(reader, "--prefix", "bklog-worker-", "--prefix", "bklog-api")[1].splitlines()
    assert [line.split()[:3] for line in both] == [api.split()[:3], worker.split()[:3]], both
    assert run(reader, "--prefix", "other-") == (0, "")
    assert run(reader, "--prefix")[0] == 64
    code, line = run(reader, "bklog-api")
    assert code == 0 and line.split()[:3] == api.split()[:3], line
    assert run(reader, "bklog-worker-pipeline") == (2, "bklog-worker-pipeline STOPPED 0 0")
    time.sleep(2)
    assert int(run(reader, "bklog-api")[1].split()[3]) >= 2
    code, out = run(reader, "bklog-worker-gone")
    assert code == 2 and "unknown to supervisord" in out and "BAD_NAME" in out, out
    subprocess.run([BIN / "supervisorctl", "-c", conf, "shutdown"], check=True, capture_output=True)
    time.sleep(1)
    code, out = run(reader)
    assert code == 4 and out.startswith("supervisord does not answer"), out
    assert run(reader, "--prefix", "bklog-")[0] == 4
    assert run(reader, "bklog-api")[0] == 2


@pytest.mark.skipif(not shutil.which("curl"), reason="the reader needs curl (the supervisor role installs it)")
def test_the_textfile_writer_exports_the_readers_states(supervisord, tmp_path: Path):
    reader, conf = supervisord
    writer = ROOT / "roles/monitoring/files/bklog-supervisor-textfile"
    out = tmp_path / "textfile"
    out.mkdir()
    assert run("sh", writer, out, reader)[0] == 0
    metrics = (out / "bklog_supervisor.prom").read_text()
    assert "bklog_supervisor_reachable 1\n" in metrics
    assert 'node_supervisord_up{name="bklog-api"} 1\n' in metrics
    assert 'node_supervisord_up{name="bklog-worker-pipeline"} 0\n' in metrics
    assert 'node_supervisord_state{name="bklog-worker-pipeline"} 0\n' in metrics
    subprocess.run([BIN / "supervisorctl", "-c", conf, "shutdown"], check=True, capture_output=True)
    time.sleep(1)
    assert run("sh", writer, out, reader)[0] == 0
    metrics = (out / "bklog_supervisor.prom").read_text()
    assert "bklog_supervisor_reachable 0\n" in metrics and "node_supervisord_up" not in metrics


@pytest.mark.skipif(not shutil.which("curl"), reason="the reader needs curl (the supervisor role installs it)")
def test_the_status_collector_reads_the_reader(supervisord):
    """playbooks/status.yml's collector: programs with the prefix, an uptime for the running ones,
    supervisord's absence said as one UNREACHABLE entry."""
    import importlib.util
    reader, conf = supervisord
    spec = importlib.util.spec_from_file_location("collect", ROOT / "roles/bklog_status/files/bklog_status_collect.py")
    collect = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(collect)
    api, worker = collect.programs(str(reader), "bklog-")
    assert api["name"] == "bklog-api" and api["state"] == "RUNNING" and re.fullmatch(r"\d+:\d\d:\d\d", api["uptime"])
    assert worker == {"name": "bklog-worker-pipeline", "state": "STOPPED", "uptime": None, "detail": ""}
    assert collect.programs(str(reader), "bklog-worker-") == [worker]
    subprocess.run([BIN / "supervisorctl", "-c", conf, "shutdown"], check=True, capture_output=True)
    time.sleep(1)
    [gone] = collect.programs(str(reader), "bklog-")
    assert gone["state"] == "UNREACHABLE" and "does not answer" in gone["detail"], gone
