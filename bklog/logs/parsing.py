"""Turning raw lines into (timestamp, message, fields) by the index set's parse rule."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

MAX_LINE_CHARS = 65536
TIMESTAMP_KEYS = ("@timestamp", "timestamp", "time")
MESSAGE_KEYS = ("message", "msg", "log")


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
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"parse rule regex does not compile: {exc}") from None
        if not compiled.groupindex:
            raise ValueError("parse rule regex has no named groups, e.g. (?P<level>\\w+)")
        return "regex", pattern
    raise ValueError(f"parse rule {rule!r} is not one of plain, json, regex:PATTERN")


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
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise LineError(f"timestamp {value!r} is not ISO 8601") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise LineError(f"timestamp {value!r} is not ISO 8601 or epoch seconds")


def _from_object(obj: dict, default_ts: datetime) -> tuple[datetime, str, dict]:
    fields = dict(obj)
    ts_value = None
    for key in TIMESTAMP_KEYS:
        if key in fields:
            ts_value = fields.pop(key)
            break
    message = None
    for key in MESSAGE_KEYS:
        if key in fields:
            message = fields.pop(key)
            break
    if message is None:
        message = json.dumps(fields, sort_keys=True, ensure_ascii=False)
    elif not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    return parse_timestamp(ts_value, default_ts), message, fields


def parse_line(kind: str, pattern: str, raw, default_ts: datetime, _cache: dict = {}) -> tuple[datetime, str, dict]:
    """One raw line (a string, or an object already structured) -> (timestamp, message, fields)."""
    if isinstance(raw, dict):
        return _from_object(raw, default_ts)
    if not isinstance(raw, str):
        raise LineError(f"a line must be a string or an object, not {type(raw).__name__}")
    if not raw.strip():
        raise LineError("empty line")
    if len(raw) > MAX_LINE_CHARS:
        raise LineError(f"line longer than {MAX_LINE_CHARS} characters")
    if kind == "plain":
        return default_ts, raw, {}
    if kind == "json":
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise LineError(f"not valid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(obj, dict):
            raise LineError("JSON line must be an object")
        return _from_object(obj, default_ts)
    compiled = _cache.get(pattern) or _cache.setdefault(pattern, re.compile(pattern))
    match = compiled.search(raw)
    if match is None:
        raise LineError("does not match the index set's regex")
    fields = {k: v for k, v in match.groupdict().items() if v is not None}
    ts_value = fields.pop("timestamp", None)
    message = fields.pop("message", None) or raw
    return parse_timestamp(ts_value, default_ts), message, fields
