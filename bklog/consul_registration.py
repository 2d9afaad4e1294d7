"""Registering the API instance with the local Consul agent (called from gunicorn's hooks).

Consul off: no call at all. Consul unreachable or refusing: one warning, and the API serves anyway.
"""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlparse

from bklog.config import Config

log = logging.getLogger("bklog.consul")
TIMEOUT_SECONDS = 3


def _agent(config: Config):
    import consul

    addr = config["CONSUL_HTTP_ADDR"]
    if "://" not in addr:
        addr = "http://" + addr
    parsed = urlparse(addr)
    return consul.Consul(host=parsed.hostname or "127.0.0.1", port=parsed.port or 8500, scheme=parsed.scheme,
                         token=config["CONSUL_HTTP_TOKEN"] or None, connections_timeout=TIMEOUT_SECONDS)


def _host_address() -> str:
    """This host's outward address (no packet is sent: UDP connect only picks a route)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1, never contacted
            return s.getsockname()[0]
    except OSError:
        return socket.gethostbyname(socket.gethostname())


def registration(config: Config, bind: str) -> dict:
    """The service definition for one API instance bound at `bind` (host:port or unix:path)."""
    host, port = "", 0
    if not bind.startswith("unix:"):
        host, _, port_text = bind.rpartition(":")
        host = host.strip("[]")
        port = int(port_text) if port_text.isdigit() else 0
    address = config["BKLOG_CONSUL_SERVICE_ADDRESS"] or (host if host not in ("", "0.0.0.0", "::") else _host_address())
    port = config["BKLOG_CONSUL_SERVICE_PORT"] or port
    if not port:
        raise ValueError(f"cannot advertise {bind!r} to Consul: set BKLOG_CONSUL_SERVICE_PORT (and _ADDRESS)")
    service_id = f"{config['BKLOG_CONSUL_SERVICE_NAME']}-{socket.gethostname()}-{port}"
    check_url = config["BKLOG_CONSUL_CHECK_URL"] or f"http://{address}:{port}/healthz"
    ready_url = config["BKLOG_CONSUL_READY_CHECK_URL"] or f"http://{address}:{port}/readyz"
    return {
        "name": config["BKLOG_CONSUL_SERVICE_NAME"],
        "service_id": service_id,
        "address": address,
        "port": port,
        "tags": config["BKLOG_CONSUL_SERVICE_TAGS"],
        "check_url": check_url,
        "ready_url": ready_url,
        "interval": config["BKLOG_CONSUL_CHECK_INTERVAL"],
        "timeout": config["BKLOG_CONSUL_CHECK_TIMEOUT"],
        "deregister": config["BKLOG_CONSUL_DEREGISTER_AFTER"],
    }


def register(bind: str, config: Config | None = None) -> str | None:
    """Register; returns the service id, or None when Consul is off or failed (warned once)."""
    config = config or Config()
    if not config["BKLOG_CONSUL_ENABLED"]:
        return None
    try:
        import consul

        reg = registration(config, bind)
        # Two checks: liveness reaps a dead instance after `deregister`; readiness only keeps the
        # instance out of "passing" while a dependency is down (a reaped instance would not come
        # back until gunicorn restarts).
        check = consul.Check.http(reg["check_url"], reg["interval"], timeout=reg["timeout"], deregister=reg["deregister"])
        ready = {**consul.Check.http(reg["ready_url"], reg["interval"], timeout=reg["timeout"]), "Name": "bklog API readiness"}
        _agent(config).agent.service.register(
            reg["name"], service_id=reg["service_id"], address=reg["address"], port=reg["port"],
            tags=reg["tags"], check=check, extra_checks=[ready], replace_existing_checks=True,
        )
    except Exception as exc:
        log.warning("Consul registration at %s failed, serving without it: %s: %s",
                    config["CONSUL_HTTP_ADDR"], exc.__class__.__name__, exc)
        return None
    log.info("registered %s with Consul at %s", reg["service_id"], config["CONSUL_HTTP_ADDR"])
    return reg["service_id"]


def deregister(service_id: str | None, config: Config | None = None) -> bool:
    if not service_id:
        return False
    config = config or Config()
    try:
        _agent(config).agent.service.deregister(service_id)
    except Exception as exc:
        log.warning("Consul deregistration of %s failed: %s: %s", service_id, exc.__class__.__name__, exc)
        return False
    log.info("deregistered %s from Consul", service_id)
    return True


def registered_here(config: Config | None = None) -> bool | None:
    """Whether the local agent has this host's API registered and out of maintenance (the gauge
    behind BklogNotInConsul); None when Consul is off. An agent that does not answer counts as not
    registered: nothing finds the instance through it."""
    config = config or Config()
    if not config["BKLOG_CONSUL_ENABLED"]:
        return None
    name = config["BKLOG_CONSUL_SERVICE_NAME"]
    try:
        agent = _agent(config).agent
        ids = {sid for sid, service in agent.services().items() if service.get("Service") == name}
        checks = agent.checks()
    except Exception as exc:
        log.warning("Consul agent at %s unavailable: %s: %s", config["CONSUL_HTTP_ADDR"], exc.__class__.__name__, exc)
        return False
    in_maintenance = "_node_maintenance" in checks or any(f"_service_maintenance:{sid}" in checks for sid in ids)
    return bool(ids) and not in_maintenance
