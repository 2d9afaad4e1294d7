"""Filebeat 7.17 OSS (scripts/build-filebeat.sh builds it from its Go module, cached), unmodified,
with docs/filebeat.yml as written: a file of lines shipped into BK LOG through gunicorn, every line
searchable once, with its fields; gunicorn stopped for 20 s mid-stream and started again, and
still every line once (Filebeat retries what was not acknowledged)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from waiting import search, ship_through_an_outage

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "service"))


@pytest.fixture(scope="module")
def filebeat_binary() -> str:
    proc = subprocess.run([str(ROOT / "scripts" / "build-filebeat.sh")], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_filebeat_ships_every_line_once_through_an_outage(tmp_path, filebeat_binary):
    from e2e_stack import Stack

    stack = Stack(tmp_path / "bklog", None)
    token = stack.bklog("create_index_set", "app")
    api = stack.bklog("create_api_token", "ops")
    stack.start_gunicorn()
    logs = tmp_path / "logs"
    logs.mkdir()
    app_log = logs / "app.log"
    home = tmp_path / "filebeat"
    home.mkdir()
    config = home / "filebeat.yml"
    config.write_text((ROOT / "docs" / "filebeat.yml").read_text())  # as written
    config.chmod(0o600)  # Filebeat refuses a configuration others can write
    env = {**os.environ, "BKLOG_URL": stack.url, "BKLOG_INGEST_TOKEN": token, "BKLOG_LOG_FILES": str(logs / "*.log")}
    log = open(tmp_path / "filebeat.log", "w")
    filebeat = subprocess.Popen([filebeat_binary, "-e", "-c", str(config), "--path.home", str(home),
                                 "--path.data", str(home / "data"), "--path.logs", str(home / "logs")],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ship_through_an_outage(stack, api, app_log)

        hit = search(stack, api, "q=%22first+part+line+7%22&size=1")["hits"][0]
        assert hit["message"] == "first part line 7 order=7"
        fields = hit["fields"]
        assert fields["log.file.path"] == str(app_log) and fields["agent.type"] == "filebeat"
        assert fields["input.type"] == "log" and "host.name" in fields
        by_path = search(stack, api, f"field.log.file.path={app_log}&size=1")
        assert by_path["total"] == 200
    finally:
        os.killpg(filebeat.pid, signal.SIGTERM)
        filebeat.wait(timeout=30)
        log.close()
        stack.close()
        print((tmp_path / "filebeat.log").read_text()[-3000:])
