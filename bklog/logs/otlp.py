"""OpenTelemetry logs over HTTP (OTLP/HTTP, `POST /v1/logs`): protobuf or JSON, gzip or not.

Each log record becomes a line: its body the message (a non-text body as JSON), its time (or,
when unset, its observed time; else the time received) the timestamp, its severity the field
`level` (the text, else the name of the number's range), its resource's and its own attributes
fields (nested key-value lists as dotted names), trace and span ids fields `trace_id` and
`span_id` (hex). Records that cannot be stored (an attribute holding NaN, a time out of range, an
empty body) are rejected one by one and counted in the answer's partial success, as the OTLP
specification says; the others are stored whole, as one batch. A request refused whole answers its
HTTP status with a google.rpc.Status body in the request's encoding (JSON for any other), as the
specification says of every 4xx and 5xx.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from bklog.logs.lines import from_us
from bklog.logs.parsing import MESSAGE_KEYS, TIMESTAMP_KEYS, LineError, parse_line

PROTOBUF = "application/x-protobuf"
# The names of SeverityNumber's ranges (1-4 TRACE ... 21-24 FATAL).
SEVERITY_NAMES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
# Attribute names that would be read as the line's message or time: kept under this prefix.
_RESERVED = set(MESSAGE_KEYS) | set(TIMESTAMP_KEYS)


# A refusal's HTTP status as the gRPC code of its Status (anything else: UNKNOWN).
STATUS_CODES = {
    400: code_pb2.INVALID_ARGUMENT, 401: code_pb2.UNAUTHENTICATED, 403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND, 405: code_pb2.UNIMPLEMENTED, 413: code_pb2.INVALID_ARGUMENT,
    415: code_pb2.INVALID_ARGUMENT, 429: code_pb2.RESOURCE_EXHAUSTED, 500: code_pb2.INTERNAL,
    503: code_pb2.UNAVAILABLE,
}


class OtlpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def decode(body: bytes, content_type: str) -> dict:
    """The request as OTLP's JSON form (camelCase, ids in hex), from either encoding."""
    if content_type == PROTOBUF:
        request = logs_service_pb2.ExportLogsServiceRequest()
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise OtlpError(400, f"body is not an OTLP ExportLogsServiceRequest: {exc}") from None
        data = json_format.MessageToDict(request, use_integers_for_enums=True)
        for resource in data.get("resourceLogs", []):
            for scope in resource.get("scopeLogs", []):
                for record in scope.get("logRecords", []):
                    for key in ("traceId", "spanId"):
                        if key in record:
                            record[key] = base64.b64decode(record[key]).hex()
        return data
    if content_type == "application/json":
        try:
            data = json.loads(body)
        except RecursionError:
            raise OtlpError(400, "body is not OTLP JSON: nested too deeply") from None
        except ValueError as exc:
            raise OtlpError(400, f"body is not OTLP JSON: {exc}") from None
        _check_shape(data)
        return data
    raise OtlpError(415, f"Content-Type {content_type!r}: send {PROTOBUF} or application/json")


def _objects(parent: dict, key: str, where: str) -> list:
    """`parent[key]`, which OTLP makes a list of objects (absent or null: none)."""
    items = parent.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise OtlpError(400, f"body is not OTLP JSON: {where}{key} is not a list of objects")
    return items


def _check_shape(data) -> None:
    """The JSON form's skeleton (resourceLogs[].scopeLogs[].logRecords[], each an object), as the
    protobuf parser checks the binary form's: a request of another shape is refused whole. What is
    wrong inside one record is that record's rejection, counted in the partial success."""
    if not isinstance(data, dict):
        raise OtlpError(400, "body is not OTLP JSON: not an object")
    for r, resource in enumerate(_objects(data, "resourceLogs", "")):
        for s, scope in enumerate(_objects(resource, "scopeLogs", f"resourceLogs[{r}].")):
            _objects(scope, "logRecords", f"resourceLogs[{r}].scopeLogs[{s}].")


def _any_value(value):
    """An OTLP AnyValue as plain JSON (ints arrive as strings in OTLP JSON)."""
    if not isinstance(value, dict):
        raise ValueError("an attribute value is not an AnyValue object")
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_any_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return _attributes((value["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def _attributes(pairs) -> dict:
    if not isinstance(pairs, list):
        raise ValueError("attributes are not a list")
    out = {}
    for pair in pairs:
        if not isinstance(pair, dict) or not isinstance(pair.get("key"), str):
            raise ValueError("an attribute has no key")
        out[pair["key"]] = _any_value(pair.get("value", {}))
    return out


def _time(nanos) -> str | None:
    nanos = int(nanos or 0)
    if nanos <= 0:
        return None
    return from_us(nanos // 1000).isoformat()


def _severity(record: dict) -> str | None:
    if record.get("severityText"):
        return record["severityText"]
    number = int(record.get("severityNumber") or 0)
    return SEVERITY_NAMES[min((number - 1) // 4, 5)] if number > 0 else None


def _line(resource_attributes: dict, scope: dict, record: dict) -> dict:
    """One record as a line object: what parse_line reads as message, time and fields."""
    if not isinstance(record, dict):
        raise ValueError("a log record is not an object")
    body = _any_value(record.get("body") or {})
    if body is None or body == "":
        raise ValueError("the record has no body")
    fields = {**resource_attributes, **_attributes(record.get("attributes", []))}
    fields = {(f"attributes.{k}" if k in _RESERVED else k): v for k, v in fields.items()}
    scope_name = (scope.get("scope") or {}).get("name")
    if scope_name:
        fields.setdefault("otel.scope.name", scope_name)
    level = _severity(record)
    if level:
        fields.setdefault("level", level)
    for key, name in (("traceId", "trace_id"), ("spanId", "span_id")):
        if record.get(key):
            fields.setdefault(name, record[key])
    line = {"message": body if isinstance(body, str) else json.dumps(body, ensure_ascii=False), **fields}
    ts = _time(record.get("timeUnixNano")) or _time(record.get("observedTimeUnixNano"))
    if ts:
        line["@timestamp"] = ts
    return line


def to_lines(data: dict, received_at: datetime) -> tuple[list[dict], int, str]:
    """The records as lines; how many were rejected, and the first reason."""
    lines, rejected, first_error = [], 0, ""
    for resource in data.get("resourceLogs") or []:
        try:
            resource_attributes = _attributes(((resource or {}).get("resource") or {}).get("attributes", []))
        except (ValueError, TypeError, AttributeError) as exc:
            resource_attributes, first_error = None, first_error or f"a resource: {exc}"
        for scope in (resource or {}).get("scopeLogs") or []:
            for record in (scope or {}).get("logRecords") or []:
                try:
                    if resource_attributes is None:
                        raise ValueError("its resource's attributes are malformed")
                    line = _line(resource_attributes, scope, record)
                    parse_line("json", "", line, received_at)  # what a store would refuse, refused here
                except (ValueError, TypeError, AttributeError, OverflowError, LineError) as exc:
                    rejected += 1
                    first_error = first_error or f"a log record: {exc}"
                    continue
                lines.append(line)
    return lines, rejected, first_error


def answer_body(content_type: str, rejected: int, error_message: str) -> bytes:
    response = logs_service_pb2.ExportLogsServiceResponse()
    if rejected:
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = error_message[:1000]
    if content_type == PROTOBUF:
        return response.SerializeToString()
    return json_format.MessageToJson(response, indent=None).encode()


def status_body(content_type: str, http_status: int, message: str) -> tuple[bytes, str]:
    """A refusal's body and its Content-Type: a google.rpc.Status naming what is wrong."""
    status = status_pb2.Status(code=STATUS_CODES.get(http_status, code_pb2.UNKNOWN), message=message[:1000])
    if content_type == PROTOBUF:
        return status.SerializeToString(), PROTOBUF
    return json_format.MessageToJson(status, indent=None).encode(), "application/json"
