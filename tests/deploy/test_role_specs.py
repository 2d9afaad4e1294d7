"""Every role documents each default, and validates each: defaults/main.yml and
meta/argument_specs.yml name the same variables, all prefixed with the role name."""

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "roles").iterdir() if p.is_dir())


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_match_argument_specs(role):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = specs["main"]["options"]
    assert set(defaults) <= set(options), f"undocumented in argument_specs: {set(defaults) - set(options)}"
    assert set(options) - set(defaults) == {k for k, v in options.items() if v.get("required") and k not in defaults}
    for name in options:
        assert name.startswith(role.name + "_"), f"{name} lacks the {role.name}_ prefix"
    lines = (role / "defaults" / "main.yml").read_text().splitlines()
    for name in defaults:
        assert documented(lines, name), f"{name} has no comment above it (or above its block) in defaults/main.yml"


def documented(lines: list[str], name: str) -> bool:
    """A comment above the default, or above the block of defaults it belongs to: going up from
    its line, a comment comes before a blank line (or the top of the file)."""
    index = next(i for i, line in enumerate(lines) if line.startswith(name + ":"))
    for line in reversed(lines[:index]):
        if not line.strip() or line.strip() == "---":
            return False
        if line.lstrip().startswith("#"):
            return True
    return False


def test_the_comment_check_can_fail():
    assert documented(["---", "# Port.", "x_port: 1", "x_host: a"], "x_host")
    assert not documented(["---", "# Port.", "x_port: 1", "", "x_host: a"], "x_host")
    assert not documented(["---", "x_host: a"], "x_host")
