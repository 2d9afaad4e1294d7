"""bklog/Dockerfile, built with podman (scripts/build-image.sh) and run the way the guide's Docker
mode runs it: `bklog migrate` as a one-off, the API (gunicorn) and a Celery worker from the same
image against a Redis container, all on one podman network, the data (SQLite) on a volume."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "bklog-img-test"
NETWORK, REDIS, API, WORKER, VOLUME = (f"{PREFIX}-{n}" for n in ("net", "redis", "api", "worker", "data"))
PORT = 18300
ENV = {
    # dev: SQLite on the volume is allowed (prod and stag require DATABASE_URL, a PostgreSQL).
    "BKLOG_ENV": "dev",
    "BKLOG_SECRET_KEY": "container-test-secret-0123456789abcdef0123456789abcdef",
    "BKLOG_ALLOWED_HOSTS": "127.0.0.1,localhost",
    "REDIS_URL": f"redis://{REDIS}:6379/0",
    "GUNICORN_WORKERS": "2",
}


def podman(*args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def env_args(extra: dict | None = None) -> list[str]:
    return [arg for key, value in {**ENV, **(extra or {})}.items() for arg in ("-e", f"{key}={value}")]


def remove_all():
    podman("rm", "-f", "-t", "5", API, WORKER, REDIS, check=False)
    podman("volume", "rm", "-f", VOLUME, check=False)
    podman("network", "rm", "-f", NETWORK, check=False)


def http(method: str, path: str, body: bytes | None = None, token: str = "", content_type: str = "application/json"):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:  # not listening yet
        return None, repr(exc).encode()


def wait_until(predicate, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def image() -> str:
    tag = subprocess.run([str(ROOT / "scripts" / "build-image.sh"), "localhost/bklog:container-test"],
                         capture_output=True, text=True, timeout=1200)
    assert tag.returncode == 0, tag.stdout + tag.stderr
    return tag.stdout.split()[-1]


@pytest.fixture(scope="module")
def stack(image):
    """A Redis container (the test hosts' image: redis-server is in it), the data volume and the
    network; migrate is the first test, the API and the worker start after it."""
    remove_all()
    podman("network", "create", NETWORK)
    podman("volume", "create", VOLUME)
    podman("run", "-d", "--name", REDIS, "--network", NETWORK, "localhost/bklog-test-bookworm:latest",
           "redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "")
    yield image
    for name in (API, WORKER):
        logs = podman("logs", "--tail", "30", name, check=False)
        print(f"--- {name}\n{logs.stdout}{logs.stderr}")
    remove_all()


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck(image):
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert inspected["Healthcheck"]["Test"][0] == "CMD" and "/healthz" in " ".join(inspected["Healthcheck"]["Test"])
    assert config["Cmd"] == ["gunicorn", "-c", "python:bklog.gunicorn_config", "bklog.wsgi:application"]


def test_migrate_runs_as_a_one_off(stack):
    run = podman("run", "--rm", "--network", NETWORK, "-v", f"{VOLUME}:/var/lib/bklog", *env_args(), stack,
                 "bklog", "migrate", "--no-input")
    assert "Applying logs.0001_initial... OK" in run.stdout, run.stdout
    again = podman("run", "--rm", "--network", NETWORK, "-v", f"{VOLUME}:/var/lib/bklog", *env_args(), stack,
                   "bklog", "migrate", "--no-input")
    assert "No migrations to apply" in again.stdout


def test_the_api_serves_readyz_against_redis(stack):
    podman("run", "-d", "--name", API, "--network", NETWORK, "-v", f"{VOLUME}:/var/lib/bklog",
           "-p", f"127.0.0.1:{PORT}:8000", *env_args(), stack)
    status, body = wait_until(lambda: (r := http("GET", "/readyz")) and r[0] == 200 and r, "/readyz 200")
    checks = json.loads(body)
    assert checks["status"] == "ready" and checks["checks"]["broker"] == "ok", checks
    assert podman("exec", API, "id", "-u").stdout.strip() == "10001"
    # The image's HEALTHCHECK, run by podman.
    assert podman("healthcheck", "run", API, check=False).returncode == 0


def test_a_worker_from_the_same_image_indexes_what_the_api_accepts(stack):
    spec = subprocess.run(["python3", "-c", "import yaml,sys; w=[w for w in yaml.safe_load(open(sys.argv[1]))['celery']['workers'] "
                           "if w['name']=='pipeline'][0]; print(','.join(w['queues']))", str(ROOT / "bklog" / "app.yml")],
                          capture_output=True, text=True, check=True).stdout.strip()
    podman("run", "-d", "--name", WORKER, "--network", NETWORK, "-v", f"{VOLUME}:/var/lib/bklog", *env_args(), stack,
           "celery", "-A", "bklog.celery_app", "worker", "-Q", spec, "-c", "1", "--loglevel", "INFO")
    admin = podman("exec", API, "bklog", "create_api_token", "container-test").stdout.strip().splitlines()[-1]
    status, body = http("POST", "/api/v1/index_sets", json.dumps({"name": "containers"}).encode(), admin)
    assert status == 201, body
    ingest_token = json.loads(body)["ingest_token"]
    lines = "\n".join(f"container line {i} shipped" for i in range(25)).encode()
    status, body = http("POST", "/api/v1/index_sets/containers/ingest", lines, ingest_token, "text/plain")
    assert status == 202, body  # async: REDIS_URL is set, the pipeline worker indexes it
    found = wait_until(lambda: json.loads(http("GET", "/api/v1/index_sets/containers/search?q=shipped", token=admin)[1])
                       .get("total") == 25, "25 lines indexed by the worker container", timeout=60)
    assert found


def test_the_login_page_and_its_static_files_are_served_without_nginx(stack):
    """Issue 19: no nginx in front of a container: WhiteNoise serves the files collected into the
    image, under their hashed names, cached for a year."""
    status, page = http("GET", "/login/")
    assert status == 200 and b'name="csrfmiddlewaretoken"' in page
    css = page.decode().split('<link rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    assert css.startswith("/static/bklog/bklog.") and css != "/static/bklog/bklog.css"
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{css}", timeout=10) as response:
        assert response.status == 200 and "immutable" in response.headers["Cache-Control"]
