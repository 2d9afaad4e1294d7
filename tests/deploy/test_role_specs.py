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
    text = (role / "defaults" / "main.yml").read_text()
    for name in defaults:
        line = text.splitlines().index(next(l for l in text.splitlines() if l.startswith(name + ":")))
        assert text.splitlines()[line - 1].startswith("#") or text.splitlines()[line - 1].startswith(name[:3]), \
            f"{name} has no comment above it in defaults/main.yml"
