"""The OpenTelemetry Collector (scripts/build-otelcol.sh builds it from its Go modules with the
Collector's own builder, cached), unmodified, with docs/otelcol.yaml as written: a file of lines
shipped into BK LOG's OTLP endpoint through gunicorn, every line searchable once with the file's
name as a field; gunicorn stopped for 20 s mid-stream and started again, and still every line once
(the otlphttp exporter retries what was not acknowledged)."""

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
def otelcol_binary() -> str:
    proc = subprocess.run([str(ROOT / "scripts" / "build-otelcol.sh")], capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_the_collector_ships_every_line_once_through_an_outage(tmp_path, otelcol_binary):
    from e2e_stack import Stack

    stack = Stack(tmp_path / "bklog", None)
    token = stack.bklog("create_index_set", "app")
    api = stack.bklog("create_api_token", "ops")
    stack.start_gunicorn()
    logs = tmp_path / "logs"
    logs.mkdir()
    app_log = logs / "app.log"
    app_log.write_text("")
    env = {**os.environ, "BKLOG_URL": stack.url, "BKLOG_INGEST_TOKEN": token, "BKLOG_LOG_FILES": str(logs / "*.log")}
    log = open(tmp_path / "otelcol.log", "w")
    collector = subprocess.Popen([otelcol_binary, "--config", str(ROOT / "docs" / "otelcol.yaml")],  # as written
                                 env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ship_through_an_outage(stack, api, app_log)

        hit = search(stack, api, "q=%22first+part+line+7%22&size=1")["hits"][0]
        assert hit["message"] == "first part line 7 order=7"
        assert hit["fields"]["log.file.name"] == "app.log", hit["fields"]
        assert search(stack, api, "field.log.file.name=app.log&size=1")["total"] == 200
    finally:
        os.killpg(collector.pid, signal.SIGTERM)
        collector.wait(timeout=30)
        log.close()
        stack.close()
        print((tmp_path / "otelcol.log").read_text()[-3000:])
