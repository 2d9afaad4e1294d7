"""Configuration: env files, overrides, and refusals that name every variable at fault."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bklog.config import VARIABLES, Config, ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_env_file_then_environment():
    cfg = Config({"BKLOG_ENV": "dev"})
    assert cfg["BKLOG_DEBUG"] is True and cfg.sources["BKLOG_DEBUG"] == "dev.env.yml"
    cfg = Config({"BKLOG_ENV": "dev", "BKLOG_DEBUG": "false", "GUNICORN_WORKERS": "3"})
    assert cfg["BKLOG_DEBUG"] is False and cfg["GUNICORN_WORKERS"] == 3
    assert cfg.sources["GUNICORN_WORKERS"] == "environment"
    assert Config({"BKLOG_ENV": "prod"})["BKLOG_DEBUG"] is False


def test_prod_names_every_missing_variable():
    with pytest.raises(ConfigError) as info:
        Config({"BKLOG_ENV": "prod"}).validate()
    for name in ("BKLOG_SECRET_KEY", "BKLOG_ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"):
        assert name in str(info.value)
    Config({"BKLOG_ENV": "prod", "BKLOG_SECRET_KEY": "x", "BKLOG_ALLOWED_HOSTS": "a",
            "DATABASE_URL": "postgres://h/db", "REDIS_URL": "redis://h"}).validate()


def test_debug_is_refused_outside_dev():
    with pytest.raises(ConfigError, match="BKLOG_DEBUG=true is refused with BKLOG_ENV=stag"):
        Config({"BKLOG_ENV": "stag", "BKLOG_DEBUG": "1", "BKLOG_SECRET_KEY": "x", "BKLOG_ALLOWED_HOSTS": "a",
                "DATABASE_URL": "postgres://h/db", "REDIS_URL": "redis://h"}).validate()


@pytest.mark.parametrize("env, message", [
    ({"BKLOG_ENV": "production"}, "BKLOG_ENV='production' is not one of dev, stag, prod"),
    ({"GUNICORN_WORKERS": "many"}, "GUNICORN_WORKERS='many' (environment) is not an integer"),
    ({"BKLOG_DEBUG": "maybe"}, "BKLOG_DEBUG='maybe' (environment) is not a boolean"),
    ({"BKLOG_SEARCH_BACKEND": "opensearch", "BKLOG_OPENSEARCH_URL": "http://os1:9200", "BKLOG_OPENSEARCH_REFRESH": "true"},
     "BKLOG_OPENSEARCH_REFRESH='true' is not one of auto, wait_for, false"),
    ({"BKLOG_SEARCH_BACKEND": "opensearch", "BKLOG_OPENSEARCH_URL": "http://os1:9200",
      "BKLOG_OPENSEARCH_REFRESH_INTERVAL": "-1"}, "BKLOG_OPENSEARCH_REFRESH_INTERVAL='-1' is not a whole number of ms, s or m"),
    ({"BKLOG_SEARCH_BACKEND": "opensearch", "BKLOG_OPENSEARCH_URL": "http://os1:9200",
      "BKLOG_OPENSEARCH_REFRESH_INTERVAL": "1 s"}, "BKLOG_OPENSEARCH_REFRESH_INTERVAL='1 s' is not a whole number"),
])
def test_malformed_values_are_named(env, message):
    with pytest.raises(ConfigError) as info:
        Config(env).validate()
    assert message in str(info.value)


@pytest.mark.parametrize("configured, pipeline_async, used", [
    ("auto", False, "wait_for"), ("auto", True, "false"), ("wait_for", True, "wait_for"), ("false", False, "false"),
])
def test_opensearch_refresh_auto_waits_inline_only(settings, configured, pipeline_async, used):
    """auto: a request indexing its own batch answers once the lines are searchable; a pipeline
    worker does not wait for the refresh (it would index about one batch a second)."""
    from bklog.logs.opensearch_store import OpenSearchStore

    settings.BKLOG_OPENSEARCH_REFRESH, settings.BKLOG_PIPELINE_ASYNC = configured, pipeline_async
    settings.BKLOG_OPENSEARCH_URL = ["http://127.0.0.1:9"]  # the client connects lazily: no request here
    assert OpenSearchStore.from_settings().refresh == used


def test_async_without_broker_is_refused():
    with pytest.raises(ConfigError, match="BKLOG_PIPELINE_MODE=async needs REDIS_URL"):
        Config({"BKLOG_PIPELINE_MODE": "async"}).validate()


def test_bklog_command_refuses_to_start_in_prod(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env.update(BKLOG_ENV="prod", BKLOG_DATA_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "bklog.manage", "check"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "BKLOG_SECRET_KEY, BKLOG_ALLOWED_HOSTS, DATABASE_URL, REDIS_URL" in proc.stderr


def test_every_variable_is_documented():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in VARIABLES if f"`{name}`" not in doc]
    assert not missing, f"document these in docs/configuration.md: {missing}"


@pytest.mark.one_backend
def test_every_top_level_key_of_app_yml_is_read_by_something():
    """bklog/app.yml is the one source of truth: a key nothing reads is a fact that only looks like one."""
    import re

    import yaml

    keys = yaml.safe_load((ROOT / "bklog" / "app.yml").read_text())
    readers = [p for folder in ("bklog", "roles", "plugins", "scripts", "playbooks") for p in (ROOT / folder).rglob("*")
               if p.is_file() and p.suffix in (".py", ".yml", ".j2") and p.name != "app.yml"]
    text = "\n".join(p.read_text(errors="replace") for p in readers)
    unread = [key for key in keys if not re.search(rf"\b{re.escape(key)}\b", text)]
    assert not unread, f"bklog/app.yml keys read by nothing (use or remove them): {unread}"
