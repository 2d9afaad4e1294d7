"""Run a few tasks on the controller (localhost, local connection) with the project's ansible.cfg:
how the deploy tests render a role's templates and variables without a host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HEADER = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
"""


def run_local_play(tmp_path: Path, tasks: str, groups: dict, localhost_vars: dict | None = None,
                   extra_vars: dict | None = None) -> None:
    """`tasks`: the play's task list, indented four spaces. `groups`: the inventory's groups beside
    localhost. `extra_vars` go on the command line, over any role defaults the tasks include_vars."""
    localhost = {"ansible_python_interpreter": sys.executable, **(localhost_vars or {})}
    inventory = {"all": {"hosts": {"localhost": localhost}, "children": groups}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(HEADER + tasks)
    args = [str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml")]
    if extra_vars:
        (tmp_path / "vars.json").write_text(json.dumps(extra_vars))
        args += ["-e", f"@{tmp_path / 'vars.json'}"]
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    run = subprocess.run([*args, str(tmp_path / "play.yml")], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
