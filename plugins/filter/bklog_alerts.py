"""bklog_alert_threshold: the threshold an alert of monitoring/bklog-alerts.yml fires above, for
the roles that judge the same thing (bklog_status: a backlog, a disk). The rules Prometheus
evaluates are the one place each threshold is written.

    {{ lookup('ansible.builtin.file', rules_file) | from_yaml | bklog_alert_threshold('BklogCeleryBacklog') }}
      -> 1000
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# The expression ends with its comparison: `... > 1000`, `... > 0.85`.
THRESHOLD = re.compile(r">=?\s*([0-9]+(?:\.[0-9]+)?)\s*$")


def bklog_alert_threshold(rules: dict, alert: str) -> int | float:
    try:
        found = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == alert]
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError(f"bklog_alert_threshold: not a Prometheus rules file (lacks {exc})") from exc
    if len(found) != 1:
        raise AnsibleFilterError(f"bklog_alert_threshold: {len(found)} alerts named {alert!r} in the rules, not one")
    match = THRESHOLD.search(str(found[0].get("expr", "")))
    if not match:
        raise AnsibleFilterError(f"bklog_alert_threshold: the expression of {alert} does not end with '> NUMBER'")
    number = match.group(1)
    return float(number) if "." in number else int(number)


class FilterModule:
    def filters(self):
        return {"bklog_alert_threshold": bklog_alert_threshold}
