"""The README's command blocks that tests run as written: each fenced bash block right after a
`<!-- run as written by <test file> ... -->` line."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(test_file: str) -> list[str]:
    pattern = re.compile(r"<!-- run as written by " + re.escape(test_file) + r"[^>]*-->\n```bash\n(.*?)```", re.S)
    found = pattern.findall(README.read_text())
    assert found, f"README.md has no block marked for {test_file}"
    return found
