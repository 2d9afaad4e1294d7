"""Gunicorn settings as the operations guide sets them; every value from the environment.

    gunicorn -c gunicorn_config.py wsgi:application            (from the bklog/ folder)
    gunicorn -c python:bklog.gunicorn_config bklog.wsgi:application
"""

import json
import logging
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

from gunicorn import util as gunicorn_util

from bklog import consul_registration
from bklog.config import Config, ConfigError, load_app_spec

try:
    _config = Config()
    _config.validate()
except ConfigError as exc:  # one line and exit 2, as `bklog` does: not a traceback
    print(f"bklog: configuration: {exc}", file=sys.stderr)
    sys.exit(2)

bind = [_config["GUNICORN_BIND"]]
workers = _config["GUNICORN_WORKERS"] or 2 * multiprocessing.cpu_count()
worker_class = "sync"
timeout = _config["GUNICORN_TIMEOUT"]
graceful_timeout = _config["GUNICORN_GRACEFUL_TIMEOUT"]
keepalive = 5
max_requests = _config["GUNICORN_MAX_REQUESTS"]
max_requests_jitter = _config["GUNICORN_MAX_REQUESTS_JITTER"]
# Import the app once in the master: a worker recycled by max_requests is a fork (milliseconds),
# not a fresh Django import (seconds during which its queued requests stall). Releases change by
# restart, never by HUP, so preloading costs nothing at deploy time.
preload_app = True
accesslog = "-"
errorlog = "-"
loglevel = _config["BKLOG_LOG_LEVEL"].lower()
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
proc_name = load_app_spec()["api"]["program"]  # the supervisor program's name (bklog/app.yml)
# gunicornc's control socket (gunicorn 25+) would go to ~/.gunicorn, shared by every gunicorn of
# the user (and not writable for the service user): nothing here uses it.
control_socket_disable = True
umask = 0o007  # the unix socket is reachable by the bklog group (nginx joins it), not by everyone
forwarded_allow_ips = "127.0.0.1"
# The longest request line gunicorn can take (its default is 4094), as nginx's 8k header buffers:
# a long query string is refused by whichever comes first with the same limit, never half-way.
limit_request_line = 8190


def _write_json_error(sock, status_int, reason, mesg):
    """gunicorn's own refusals (a request line or header too large, a malformed request, before
    Django sees it) as the API's JSON error, not gunicorn's HTML page. Replaces
    gunicorn.util.write_error, the one function every worker answers them with."""
    body = json.dumps({"error": f"{reason}: {mesg}" if mesg else reason, "param": None}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


gunicorn_util.write_error = _write_json_error

# prometheus_client multiprocess mode: one directory shared by all workers, emptied at start.
_metrics_dir = Path(_config["PROMETHEUS_MULTIPROC_DIR"] or _config.data_dir / "prometheus")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

_service_id = None
_log = logging.getLogger("gunicorn.error")


def on_starting(server):
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    _metrics_dir.mkdir(parents=True, exist_ok=True)


def _share_socket_with_proxy():
    """Give a unix socket to the proxy's group (0660): nginx connects, nobody else can."""
    group = _config["GUNICORN_SOCKET_GROUP"]
    address = _config["GUNICORN_BIND"]
    if not group or not address.startswith("unix:"):
        return
    import grp

    path = address[len("unix:"):]
    os.chown(path, -1, grp.getgrnam(group).gr_gid)
    os.chmod(path, 0o660)


def when_ready(server):
    global _service_id
    _share_socket_with_proxy()
    consul_log = logging.getLogger("bklog.consul")
    consul_log.handlers, consul_log.propagate = _log.handlers, False  # once, in gunicorn's error log
    consul_log.setLevel(logging.INFO)  # "registered ..." too: the runbook's first look (not-registered-in-consul)
    _service_id = consul_registration.register(server.cfg.bind[0], _config)


def worker_exit(server, worker):
    """A worker leaving of its own accord (max_requests, the guide's 1,000; a graceful stop) ends
    here, without the interpreter's teardown: freeing a worker's objects one by one took 160-300 ms
    of CPU, a quarter of what its 1,000 requests cost (/healthz: 1,100 -> 1,450 requests/s for one
    worker; docs/benchmarks.md). What the teardown would have done that matters is done first: the
    database connections closed, the log handlers flushed. The exit status is the worker's own."""
    if os.getpid() != worker.pid:  # the arbiter calls this too, for a worker it found gone
        return
    leaving = sys.exc_info()[1]  # called from the worker's `finally`, as its SystemExit passes
    if not isinstance(leaving, SystemExit):
        return
    from django.db import connections

    connections.close_all()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    code = leaving.code
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    consul_registration.deregister(_service_id, _config)
