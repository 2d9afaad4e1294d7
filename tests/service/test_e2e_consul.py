"""End to end, gunicorn's Consul hooks: registration when it is ready, deregistration when it
stops, harmless when the agent is absent or refuses.

A small HTTP double of the agent's API stands in for Consul here (these tests prove the payload the
hooks send); molecule/ha runs the real agents with the same hooks."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from e2e_stack import free_port

pytestmark = pytest.mark.e2e


class _AgentDouble:
    """Records requests like Consul's agent API; answers `status` to each."""

    def __init__(self, status: int):
        self.requests: list[tuple[str, str, dict]] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                double.requests.append(("PUT", self.path, json.loads(raw) if raw else {}))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.addr = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.mark.one_backend  # gunicorn's hooks and Consul, no line stored
def test_consul_hooks_register_and_deregister(stack_factory):
    agent = _AgentDouble(200)
    try:
        stack = stack_factory(None, BKLOG_CONSUL_ENABLED="true", CONSUL_HTTP_ADDR=agent.addr)
        stack.start_gunicorn(guide_layout=True)
        stack.wait_for(lambda: len(agent.requests) >= 1, "registration")
        method, path, raw = agent.requests[0]
        assert path == "/v1/agent/service/register?replace-existing-checks=true"
        # Consul decodes JSON keys case-insensitively; py-consul sends them in lower case.
        payload = {k.lower(): v for k, v in raw.items()}
        check = {k.lower(): v for k, v in payload["checks"][0].items()}
        assert payload["name"] == "bklog-api" and payload["port"] == stack.port and payload["address"] == "127.0.0.1"
        assert payload["tags"] == ["api"] and payload["id"].endswith(f"-{stack.port}")
        assert check["http"] == f"http://127.0.0.1:{stack.port}/healthz"
        assert check["interval"] == "10s" and check["timeout"] == "5s"
        assert check["deregistercriticalserviceafter"] == "1m"
        # Readiness: a second check that never deregisters (a dependency outage must not reap it).
        ready = {k.lower(): v for k, v in payload["checks"][1].items()}
        assert ready["http"] == f"http://127.0.0.1:{stack.port}/readyz" and "deregistercriticalserviceafter" not in ready
        # Said once in its log, where the runbook (not-registered-in-consul) looks first.
        stack.wait_for(lambda: f"registered {payload['id']} with Consul" in stack.log("gunicorn"), "the registration logged")
        assert stack.stop("gunicorn") == 0
        assert agent.requests[-1][1] == f"/v1/agent/service/deregister/{payload['id']}"
    finally:
        agent.close()


@pytest.mark.one_backend  # gunicorn's hooks and Consul, no line stored
@pytest.mark.parametrize("agent_status", [None, 500])
def test_consul_absent_or_refusing_warns_once_and_serves(stack_factory, agent_status):
    agent = _AgentDouble(agent_status) if agent_status else None
    try:
        addr = agent.addr if agent else f"127.0.0.1:{free_port()}"
        stack = stack_factory(None, BKLOG_CONSUL_ENABLED="true", CONSUL_HTTP_ADDR=addr)
        stack.start_gunicorn()
        assert stack.get("/healthz")[0] == 200
        assert stack.log("gunicorn").count("Consul registration at") == 1
        assert stack.stop("gunicorn") == 0
    finally:
        if agent:
            agent.close()


@pytest.mark.one_backend  # gunicorn's hooks and Consul, no line stored
def test_consul_disabled_makes_no_call(stack_factory):
    agent = _AgentDouble(200)
    try:
        stack = stack_factory(None, BKLOG_CONSUL_ENABLED="false", CONSUL_HTTP_ADDR=agent.addr)
        stack.start_gunicorn()
        assert stack.stop("gunicorn") == 0
        assert agent.requests == []
    finally:
        agent.close()
