"""`--check --diff` on a deployed host (issue 20): preflight's checks only read, so they run in
check mode too and pass on a healthy host, changing nothing. (site.yml as a whole in check mode is
not proven yet.)"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbooks import run_playbook  # noqa: E402


def test_preflight_passes_in_check_mode_on_a_deployed_host():
    run = run_playbook("preflight.yml", "--check", "--diff", timeout=300)
    assert run.returncode == 0, run.stdout[-4000:]
    plain = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)  # the recap is coloured
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", plain, re.M)
    assert len(recap) >= 2 and all(changed == "0" for _, changed in recap), recap
