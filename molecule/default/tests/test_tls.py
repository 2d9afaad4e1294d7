"""TLS at nginx (nginx_tls_enabled, the certificate molecule/shared/prepare-tls.yml made for the
host from the scenario's throwaway CA): verified as clients verify, against that CA, from the
controller over the scenario's network and from the host itself; plain HTTP only redirects."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import testinfra

from playbooks import inventory_hosts

CA = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "tls" / "ca.crt"


@pytest.fixture(scope="module", params=inventory_hosts("bklog_api"))
def name(request):
    return request.param


def address(name: str) -> str:
    info = json.loads(subprocess.run(["podman", "container", "inspect", name], capture_output=True, check=True).stdout)
    return next(iter(info[0]["NetworkSettings"]["Networks"].values()))["IPAddress"]


def https(name: str, path: str, context: ssl.SSLContext | None = None) -> tuple[int, dict, str]:
    """GET over HTTPS to the host's address, the certificate verified for the host's name."""
    context = context or ssl.create_default_context(cafile=str(CA))
    sock = socket.create_connection((address(name), 443), timeout=10)
    conn = http.client.HTTPSConnection(name, 443, context=context, timeout=10)
    conn.sock = context.wrap_socket(sock, server_hostname=name)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def test_https_serves_a_certificate_clients_verify(name):
    status, headers, body = https(name, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert headers["cache-control"] == "no-store"
    # The same certificate is refused by a client that does not trust the scenario's CA.
    with pytest.raises(ssl.SSLCertVerificationError):
        https(name, "/healthz", ssl.create_default_context(cafile=None))


def test_only_modern_protocols(name):
    context = ssl.create_default_context(cafile=str(CA))
    sock = context.wrap_socket(socket.create_connection((address(name), 443), timeout=10), server_hostname=name)
    assert sock.version() == "TLSv1.3"
    sock.close()
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(CA))
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # our side allows it: the refusal must be nginx's
    with pytest.raises(ssl.SSLError):
        old.wrap_socket(socket.create_connection((address(name), 443), timeout=10), server_hostname=name)


def test_plain_http_only_redirects(name):
    host = testinfra.get_host(f"podman://{name}")
    # From the network: a redirect to HTTPS for everything (the token would cross in clear).
    conn = http.client.HTTPConnection(address(name), 80, timeout=10)
    conn.request("POST", "/api/v1/index_sets/app/ingest", body=b"x", headers={"Authorization": "Bearer secret"})
    response = conn.getresponse()
    assert response.status == 308 and response.getheader("Location").startswith("https://")
    conn.close()
    conn = http.client.HTTPConnection(address(name), 80, timeout=10)
    conn.request("GET", "/readyz")
    assert conn.getresponse().status == 403  # health over plain HTTP is for the host itself
    conn.close()
    # On the host itself: the health endpoints Consul and the rollout gate ask, over loopback.
    assert host.check_output("curl -sS -o /dev/null -w '%{http_code}' http://127.0.0.1/readyz") == "200"
    # And HTTPS there is verified against the trust store the CA was added to, as curl does.
    assert host.check_output("curl -sS -o /dev/null -w '%{http_code}' https://localhost/healthz") == "200"


def test_the_key_is_root_only(name):
    host = testinfra.get_host(f"podman://{name}")
    key = host.file("/etc/nginx/tls/bklog.key")
    assert key.user == "root" and key.mode == 0o600
