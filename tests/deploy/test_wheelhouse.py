"""scripts/build_wheelhouse.py: the uv the hosts get is the uv the container image builds with."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_hosts_and_image_use_one_uv_version():
    spec = importlib.util.spec_from_file_location("build_wheelhouse", ROOT / "scripts" / "build_wheelhouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dockerfile = re.search(r"^ARG UV_VERSION=(\S+)$", (ROOT / "bklog" / "Dockerfile").read_text(), re.M)
    assert dockerfile and dockerfile.group(1) == module.UV_VERSION
