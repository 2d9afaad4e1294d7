"""Turning raw lines into (timestamp, message, fields) by the index set's parse rule.

Regex rules run on RE2 (google-re2), which matches in time linear in the line whatever the
pattern: a rule with nested quantifiers such as `(a+)+$` cannot make one line take seconds, as it
can with Python's backtracking `re`. RE2 has no look-around and no back-references; a rule using
them is refused when the index set is created. (Index sets created before RE2 with such a rule
keep working on Python's `re`, and `bklog check` warns about them.)
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from functools import lru_cache

import re2

from bklog.logs import values

MAX_LINE_CHARS = 65536
MAX_PATTERN_CHARS = 1000
# Where shippers put the time and the message, in order of preference: Elasticsearch's and
# Filebeat's `@timestamp` and `message`, syslog-ng's default template `MESSAGE`, zap's `ts`,
# Docker's and Fluent Bit's `log`, logfmt-style `msg` and `time`.
TIMESTAMP_KEYS = ("@timestamp", "timestamp", "ts", "time")
MESSAGE_KEYS = ("message", "MESSAGE", "msg", "log")


class LineError(ValueError):
    pass


def validate_parse_rule(rule: str) -> tuple[str, str]:
    """'plain' | 'json' | 'regex:PATTERN' -> (kind, pattern); ValueError says what is wrong."""
    if rule in ("plain", "json"):
        return rule, ""
    if rule.startswith("regex:"):
        pattern = rule[len("regex:"):]
        if not pattern:
            raise ValueError("parse rule 'regex:' needs a pattern after the colon")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise ValueError(f"parse rule regex is longer than {MAX_PATTERN_CHARS} characters")
        values.check_text(pattern, "parse rule regex")
        try:
            compiled = _re2(pattern)
        except re2.error as exc:
            reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise ValueError(f"parse rule regex does not compile with RE2 ({reason}); RE2 matches in linear "
                             "time, so it has no look-around and no back-references") from None
        if not compiled.groupindex:
            raise ValueError("parse rule regex has no named groups, e.g. (?P<level>\\w+)")
        return "regex", pattern
    raise ValueError(f"parse rule {rule!r} is not one of plain, json, regex:PATTERN")


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is reported to the client, not to stderr


def _re2(pattern: str):
    return re2.compile(pattern, _RE2_OPTIONS)


@lru_cache(maxsize=256)
def compiled_rule(pattern: str):
    """RE2 for every rule it accepts; Python's re only for rules stored before RE2 was used."""
    try:
        return _re2(pattern)
    except re2.error:
        return re.compile(pattern)


def in_utc(parsed: datetime) -> datetime:
    """An aware datetime in UTC (naive means UTC); ValueError when UTC cannot hold it (an offset
    pushing 9999-12-31 past year 9999, or 0001-01-01 before year 1)."""
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("out of range once converted to UTC (years 1 to 9999)") from None


def parse_timestamp(value, default: datetime) -> datetime:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise LineError(f"timestamp {value!r} is not ISO 8601 or epoch seconds")
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise LineError(f"timestamp {value!r} is out of range") from None
    if isinstance(value, str):
        try:
            return in_utc(datetime.fromisoformat(value.strip()))
        except ValueError as exc:
            reason = "is not ISO 8601" if "out of range" not in str(exc) else str(exc)
            raise LineError(f"timestamp {value[:100]!r} {reason}") from None
    raise LineError(f"timestamp {str(value)[:100]!r} is not ISO 8601 or epoch seconds")


def _from_object(obj: dict, default_ts: datetime, message_field: str = "") -> tuple[datetime, str, dict]:
    try:
        values.check(obj, "the line")
    except values.BadValue as exc:
        raise LineError(str(exc)) from None
    fields = dict(obj)
    ts_value = None
    for key in TIMESTAMP_KEYS:
        if key in fields:
            ts_value = fields.pop(key)
            break
    message = None
    if message_field:  # the index set's own message field, a dotted name for a nested one
        flat = flatten(fields)
        if message_field in flat:
            message, fields = flat.pop(message_field), flat
    if message is None:
        # A text value first: Filebeat's `log` is an object (the file and offset) beside `message`.
        present = [key for key in MESSAGE_KEYS if key in fields]
        key = next((k for k in present if isinstance(fields[k], str)), present[0] if present else None)
        message = fields.pop(key) if key is not None else None
    fields = flatten(fields)
    if message is None:
        message = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    elif not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    return parse_timestamp(ts_value, default_ts), message, fields


def flatten(fields: dict, prefix: str = "") -> dict:
    """Nested objects as dotted names, as Elasticsearch addresses them: {"host": {"name": "a"}}
    is {"host.name": "a"}, so field.host.name=a finds it. Arrays are values, kept whole. A name
    given both ways keeps the first seen. Depth is bounded by values.check (20 levels)."""
    flat: dict = {}
    for name, value in fields.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            for sub, sub_value in flatten(value, f"{path}.").items():
                flat.setdefault(sub, sub_value)
        else:
            flat.setdefault(path, value)
    return flat


def parse_line(kind: str, pattern: str, raw, default_ts: datetime, message_field: str = "") -> tuple[datetime, str, dict]:
    """One raw line (a string, or an object already structured) -> (timestamp, message, fields).
    message_field: an object's field holding the message, tried before MESSAGE_KEYS."""
    if isinstance(raw, dict):
        return _from_object(raw, default_ts, message_field)
    if not isinstance(raw, str):
        raise LineError(f"a line must be a string or an object, not {type(raw).__name__}")
    if not raw.strip():
        raise LineError("empty line")
    if len(raw) > MAX_LINE_CHARS:
        raise LineError(f"line longer than {MAX_LINE_CHARS} characters")
    try:
        values.check_text(raw, "the line")
    except values.BadValue as exc:
        raise LineError(str(exc)) from None
    if kind == "plain":
        return default_ts, raw, {}
    if kind == "json":
        try:
            obj = values.loads(raw, "the line")
        except values.BadValue as exc:
            raise LineError(str(exc)) from None
        if not isinstance(obj, dict):
            raise LineError("JSON line must be an object")
        return _from_object(obj, default_ts, message_field)
    match = compiled_rule(pattern).search(raw)
    if match is None:
        raise LineError("does not match the index set's regex")
    fields = {k: v for k, v in match.groupdict().items() if v is not None}
    ts_value = fields.pop("timestamp", None)
    message = fields.pop("message", None) or raw
    return parse_timestamp(ts_value, default_ts), message, fields
