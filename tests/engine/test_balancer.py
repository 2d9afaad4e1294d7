"""The balancers' nginx: roles/nginx's own templates in load-balancer mode, rendered by Ansible and
run by a real nginx (Debian's binary, unpacked by scripts/setup.sh), in front of two small HTTP
servers standing in for the API hosts (what is tested is nginx's choice of backend, not theirs).

One failed attempt marks a backend out for its fail_timeout. Once every backend in service had
failed, nginx answered 502 at once ("no live upstreams") for up to fail_timeout, though the hosts
answered again: molecule/ha lost an ingest and an export that way. Each backend's file now lists
the host again as a backup never marked failed, which nginx tries instead."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
NGINX = Path.home() / ".cache" / "bklog-deploy" / "nginx" / "usr" / "sbin" / "nginx"
TEMPLATES = ROOT / "roles" / "nginx" / "templates" / "etc" / "nginx"

pytestmark = pytest.mark.skipif(not NGINX.is_file(), reason=f"no nginx at {NGINX}: run scripts/setup.sh")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _render(template: Path, dest: Path, variables: dict) -> None:
    """A role template through Ansible itself, with the role's defaults under `variables`."""
    defaults = yaml.safe_load((ROOT / "roles" / "nginx" / "defaults" / "main.yml").read_text())
    vars_file = dest.parent / f"{dest.name}.vars.json"
    vars_file.write_text(json.dumps({**defaults, **variables}))
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-o",
                           "-m", "ansible.builtin.template", "-a", f"src={template} dest={dest}", "-e", f"@{vars_file}"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "ANSIBLE_LOCALHOST_WARNING": "false"})
    assert proc.returncode == 0, proc.stdout + proc.stderr


class _Backend(BaseHTTPRequestHandler):
    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + 3))
        self.end_headers()
        self.wfile.write(b"ok " + body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _backends(ports: list[int]):
    servers = [ThreadingHTTPServer(("127.0.0.1", port), _Backend) for port in ports]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def _ask(port: int, method: str = "GET") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/x", method=method,
                                     data=b"line" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def balancer(tmp_path):
    """nginx with the role's http and site configuration in front of two backends (ports), one
    worker (so the failure marks every request sees are the same); yields (its port, the two
    backends' ports, a function writing a backend's file in a state and reloading)."""
    port, backend_ports = _free_port(), [_free_port(), _free_port()]
    backends_dir = tmp_path / "backends"
    backends_dir.mkdir()
    names = [f"127.0.0.1:{p}" for p in backend_ports]
    common = {"nginx_backends": names, "nginx_backends_dir": str(backends_dir), "nginx_listen_port": port,
              "nginx_tls_enabled": False, "nginx_client_max_body_size": 1048576}
    _render(TEMPLATES / "conf.d" / "bklog-http.conf.j2", tmp_path / "http.conf", common)
    _render(TEMPLATES / "sites-available" / "bklog.conf.j2", tmp_path / "site.conf", common)
    # The only change to the role's files: logs here, IPv4 only (not every test machine has IPv6).
    site = (tmp_path / "site.conf").read_text().replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(re.sub(r"\n\s*listen \[::\]:[^\n]*", "", site))

    def write(name: str, state: str) -> None:
        _render(TEMPLATES / "bklog-backends" / "backend.conf.j2", backends_dir / f"{name}.conf",
                {**common, "nginx_backend": name, "nginx_backend_state": state})

    for name in names:
        write(name, "up")
    (tmp_path / "nginx.conf").write_text(
        f"user root;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{\n"
        # Debian's build puts its temporary files under /var/lib/nginx, which the package makes.
        + "".join(f"  {kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        + f"  include {tmp_path}/http.conf;\n  include {tmp_path}/site.conf;\n}}\n")
    command = [str(NGINX), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    subprocess.run(command, check=True)

    def workers() -> set[str]:
        master = (tmp_path / "nginx.pid").read_text().strip()
        return set(subprocess.run(["pgrep", "-P", master], capture_output=True, text=True).stdout.split())

    def set_state(name: str, state: str) -> None:
        write(name, state)
        before = workers()
        subprocess.run([*command, "-s", "reload"], check=True)
        # A reload is a signal: done once the workers of the old configuration are gone.
        wait_until(lambda: workers() and not workers() & before, "nginx's reload", timeout=10, every=0.1)

    try:
        wait_until(lambda: (tmp_path / "nginx.pid").is_file(), "nginx's pid file", timeout=10, every=0.1)
        yield port, backend_ports, set_state
    finally:
        subprocess.run([*command, "-s", "stop"], check=False)
        print((tmp_path / "error.log").read_text()[-2000:])


def test_backends_that_answer_again_are_used_at_once(balancer):
    port, backend_ports, _ = balancer
    # Neither answers: nginx's own 502, and both are marked out for their fail_timeout (5 s).
    assert _ask(port) == 502
    with _backends(backend_ports):
        # Back within the fail_timeout: served, a POST too (before: 502, "no live upstreams").
        assert [_ask(port), _ask(port, "POST"), _ask(port)] == [200, 200, 200]


def test_a_drained_backend_gets_nothing_even_when_the_other_has_failed(balancer):
    port, backend_ports, set_state = balancer
    drained, serving = backend_ports
    set_state(f"127.0.0.1:{drained}", "down")
    with _backends([drained]):
        # Only the drained one answers: its backup entry is down too, so nothing reaches it.
        assert [_ask(port), _ask(port, "POST")] == [502, 502]
    with _backends([serving]):
        assert _ask(port) == 200
    set_state(f"127.0.0.1:{drained}", "up")
    with _backends([drained]):
        assert _ask(port) == 200
