"""The README's command blocks that tests run as written: each fenced bash block right after a
`<!-- run as written by <test file> ... -->` line, or `<!-- run as written by <test file>::<part> -->`
for one part of a file's blocks."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(test_file: str, part: str = "") -> list[str]:
    marker = re.escape(test_file) + (r"::" + re.escape(part) + r"\b" if part else r"(?!::)")
    pattern = re.compile(r"<!-- run as written by " + marker + r"[^>]*-->\n```bash\n(.*?)```", re.S)
    found = pattern.findall(README.read_text())
    assert found, f"README.md has no block marked for {test_file}{'::' + part if part else ''}"
    return found
