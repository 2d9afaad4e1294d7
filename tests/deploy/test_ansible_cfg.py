"""ansible.cfg: Ansible's linear strategy by default; the project's shim
(plugins/strategy/mitogen_linear.py, ANSIBLE_STRATEGY=mitogen_linear) loads Mitogen's linear
strategy from the project's environment, not the plain fallback; one interpreter path for every
host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LOAD = """
from ansible.plugins.loader import init_plugin_loader, strategy_loader
init_plugin_loader()
strategy_loader.add_directory({path!r})
print(" ".join(c.__module__ for c in strategy_loader.get("mitogen_linear", class_only=True).__mro__))
"""


def test_mitogen_is_available_and_linear_is_the_default():
    dump = subprocess.run([Path(sys.executable).parent / "ansible-config", "dump", "--only-changed"],
                          env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
                          capture_output=True, text=True, check=True).stdout
    assert "DEFAULT_STRATEGY(" not in dump, dump  # Ansible's linear: Mitogen is opt-in
    assert f"= ['{ROOT / 'plugins' / 'strategy'}']" in dump, dump
    assert "INTERPRETER_PYTHON(" in dump and "= /usr/bin/python3" in dump, dump
    modules = subprocess.run([sys.executable, "-c", LOAD.format(path=str(ROOT / "plugins" / "strategy"))],
                             capture_output=True, text=True, check=True)
    assert "ansible_mitogen.strategy" in modules.stdout.split(), modules.stdout + modules.stderr
    assert "mitogen is not installed" not in modules.stderr, modules.stderr


PLAY = """
- hosts: here
  become: true
  gather_facts: false
  tasks:
    - command: id -un
      register: who
    - debug: {msg: "ran as {{ who.stdout }}"}
"""


def test_become_to_the_user_already_running_is_no_become(tmp_path):
    """A local connection with `become: true` run by root (CI, a root controller, the tests' local
    inventories): Ansible runs no sudo for it, nor may Mitogen (a root controller may have none)."""
    import getpass
    (tmp_path / "play.yml").write_text(PLAY)
    (tmp_path / "hosts").write_text(f"here ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    run = subprocess.run([Path(sys.executable).parent / "ansible-playbook", "-i", str(tmp_path / "hosts"),
                          str(tmp_path / "play.yml")],
                         env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                              "ANSIBLE_STRATEGY": "mitogen_linear", "ANSIBLE_BECOME_USER": getpass.getuser()},
                         capture_output=True, text=True)
    assert run.returncode == 0 and f"ran as {getpass.getuser()}" in run.stdout, run.stdout[-3000:] + run.stderr


def test_the_program_names_come_from_app_yml():
    """plugins/filter/bklog_programs.py: every role's supervisor program names, from bklog/app.yml."""
    import yaml
    sys.path.insert(0, str(ROOT / "plugins" / "filter"))
    from ansible.errors import AnsibleFilterError
    from bklog_programs import bklog_programs
    spec = yaml.safe_load((ROOT / "bklog" / "app.yml").read_text())
    names = bklog_programs(spec)
    assert names["api"] == "bklog-api" and names["beat"] == "bklog-beat" and names["prefix"] == "bklog-"
    assert names["workers"] == {w["name"]: "bklog-worker-" + w["name"] for w in spec["celery"]["workers"]}
    spec["celery"]["beat"]["program"] = "celery-beat"
    with pytest.raises(AnsibleFilterError, match="celery-beat do not start with program_prefix"):
        bklog_programs(spec)
    del spec["program_prefix"]
    with pytest.raises(AnsibleFilterError, match="lacks 'program_prefix'"):
        bklog_programs(spec)
