"""Every role documents each default, and validates each: defaults/main.yml and
meta/argument_specs.yml name the same variables, all prefixed with the role name. A default
linked to another role's falls back to that role's default."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())


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


# `other_role_var | default(literal)`: a role's input linked to the role that owns the fact (the
# deploy root, the supervisor and Consul paths, the ingest limit), with the owner's default as the
# fallback where the owner's role is not in the play. The fallback must be the owner's default, or
# a change there would not reach the roles that run without it.
FALLBACK = re.compile(r"\b([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\s*\|\s*default\(\s*('[^']*'|\"[^\"]*\"|-?[0-9]+|true|false)\s*\)")


def owner_defaults() -> dict:
    owned = {}
    for role in ROLES:
        for name, value in (yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}).items():
            owned[name] = (role.name, value)
    return owned


def linked_fallbacks(text: str, owned: dict, own_role: str):
    for match in FALLBACK.finditer(text):
        name, literal = match.groups()
        if name in owned and owned[name][0] != own_role:
            yield name, yaml.safe_load(literal)


def test_fallbacks_to_another_roles_default_are_that_default():
    owned = owner_defaults()
    files = [p for p in ROOT.glob("roles/*/**/*") if p.suffix in {".yml", ".j2"}] + list(ROOT.glob("playbooks/**/*.yml"))
    checked, wrong = 0, []
    for path in files:
        own_role = path.relative_to(ROOT).parts[1] if path.relative_to(ROOT).parts[0] == "roles" else ""
        for name, fallback in linked_fallbacks(path.read_text(), owned, own_role):
            owner_value = owned[name][1]
            if isinstance(owner_value, str) and "{{" in owner_value:
                continue  # the owner's default is itself computed: nothing literal to compare
            checked += 1
            if fallback != owner_value:
                wrong.append(f"{path.relative_to(ROOT)}: {name} | default({fallback!r}), but {owned[name][0]} defaults it to {owner_value!r}")
    assert not wrong, "\n".join(wrong)
    assert checked >= 15, checked


def test_the_fallback_check_can_fail():
    owned = {"owner_root": ("owner", "/opt/x")}
    assert list(linked_fallbacks("a: \"{{ owner_root | default('/opt/y') }}\"", owned, "user")) == [("owner_root", "/opt/y")]
    assert list(linked_fallbacks("a: \"{{ owner_root | default('/opt/y') }}\"", owned, "owner")) == []
    assert list(linked_fallbacks("a: \"{{ owner_size | default(10) }}\"", {"owner_size": ("owner", 10)}, "user")) == [("owner_size", 10)]
