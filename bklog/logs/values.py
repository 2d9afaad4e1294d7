"""What may reach a database: every value from a request is checked here first.

JSON from clients can hold what no database stores or what costs unbounded work: nesting deeper
than Python's recursion limit (RecursionError), NaN and Infinity (and 1e400, which Python reads as
Infinity), lone surrogates such as "\\ud800" (not Unicode: no UTF-8 encoding exists), and NUL
characters (PostgreSQL's text and jsonb refuse them). `loads` and `check` turn each into a
ValueError naming the problem, so a request gets a 400 (or a line a per-line error) instead of a
500 from the database. Nesting is capped like Elasticsearch's `index.mapping.depth.limit` (20).
"""

from __future__ import annotations

import json
import math
import re

MAX_DEPTH = 20
# Integers that every store compares exactly: SQLite binds 64-bit integers only.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


class BadValue(ValueError):
    """A value no store may take; the message says what is wrong with it."""


def check_text(text: str, what: str = "text") -> str:
    """A string a database can store: no NUL, no lone surrogate."""
    if "\x00" in text:
        raise BadValue(f"{what} holds a NUL character (\\u0000), which cannot be stored")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadValue(f"{what} holds a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not valid Unicode") from None
    return text


def check(value, what: str = "value") -> None:
    """Walk a decoded JSON value (without recursion): depth, finite numbers, storable strings."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item, f"{what}: a string")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BadValue(f"{what} holds a number that is not finite (NaN, Infinity or out of range)")
        elif isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise BadValue(f"{what} is nested more than {MAX_DEPTH} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    check_text(key, f"{what}: a key")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _refuse_constant(name: str):
    raise BadValue(f"{name} is not a JSON number")


def loads(data: bytes | str, what: str = "JSON"):
    """json.loads that refuses NaN/Infinity, absurd nesting and integers Python will not read
    (over 4300 digits), with a BadValue naming the problem; the result still needs `check`."""
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise BadValue(f"{what} is nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise BadValue(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise BadValue(f"{what} is not UTF-8 (byte {exc.start})") from None
    except ValueError as exc:  # an integer over Python's digit limit, or a refused constant
        raise BadValue(f"{what}: {exc}") from None


def loads_checked(data: bytes | str, what: str = "JSON"):
    value = loads(data, what)
    check(value, what)
    return value


def as_json_number(text: str) -> int | float | None:
    """The number a filter value spells in JSON's own grammar (not Python's, which also reads
    '1_000', ' 7 ', 'nan' and other scripts' digits), if every store compares it exactly."""
    if not _JSON_NUMBER.fullmatch(text):
        return None
    if re.fullmatch(r"-?[0-9]{1,19}", text):
        number = int(text)
        return number if INT64_MIN <= number <= INT64_MAX else None
    if re.fullmatch(r"-?[0-9]+", text):
        return None  # an integer past 64 bits: only the string is compared
    number = float(text)
    return number if math.isfinite(number) else None
