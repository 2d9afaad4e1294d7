"""OpenTelemetry logs (OTLP/HTTP `POST /v1/logs`): protobuf and JSON, gzip, partial success.
The OpenTelemetry SDK's own exporter against gunicorn is in test_e2e_clients.py."""

from __future__ import annotations

import gzip
import json

import pytest
from conftest import auth
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from stored_lines import StoredLines

pytestmark = pytest.mark.django_db


def refusal(response) -> tuple[int, str]:
    """A refusal's google.rpc.Status (code, message), read as an OTLP client reads it."""
    status = status_pb2.Status()
    if response["Content-Type"] == "application/x-protobuf":
        status.ParseFromString(response.content)
    else:
        json_format.Parse(response.content, status)  # strict: no field beside the Status's own
    return status.code, status.message


def request_with(records: list[dict], resource: dict | None = None) -> logs_service_pb2.ExportLogsServiceRequest:
    request = logs_service_pb2.ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    for key, value in (resource or {"service.name": "shop", "host.name": "web-01"}).items():
        attribute = resource_logs.resource.attributes.add()
        attribute.key, attribute.value.string_value = key, value
    scope = resource_logs.scope_logs.add()
    scope.scope.name = "shop.checkout"
    for spec in records:
        record = scope.log_records.add()
        if "body" in spec:
            record.body.string_value = spec["body"]
        record.time_unix_nano = spec.get("time", 1772359202500000000)
        record.severity_number = spec.get("severity_number", 0)
        record.severity_text = spec.get("severity_text", "")
        if "trace" in spec:
            record.trace_id = bytes.fromhex(spec["trace"])
        for key, value in spec.get("attributes", {}).items():
            attribute = record.attributes.add()
            attribute.key = key
            if isinstance(value, bool):
                attribute.value.bool_value = value
            elif isinstance(value, int):
                attribute.value.int_value = value
            elif isinstance(value, float):
                attribute.value.double_value = value
            else:
                attribute.value.string_value = value
    return request


def post(client, token, body: bytes, content_type: str = "application/x-protobuf", **headers):
    return client.post("/v1/logs", data=body, content_type=content_type, **auth(token), **headers)


def test_protobuf_records_arrive_with_fields_severity_and_time(client, make_index_set):
    index_set, token = make_index_set("otel")
    body = request_with([
        {"body": "payment accepted", "severity_text": "INFO", "attributes": {"order.id": 42, "amount": 9.5},
         "trace": "0af7651916cd43dd8448eb211c80319c"},
        {"body": "card declined", "severity_number": 17, "attributes": {"retry": True}},
    ]).SerializeToString()
    r = post(client, token, gzip.compress(body), HTTP_CONTENT_ENCODING="gzip")
    assert r.status_code == 200 and r["Content-Type"] == "application/x-protobuf"
    answer = logs_service_pb2.ExportLogsServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_log_records == 0
    lines = {line.message: line for line in StoredLines().all(index_set)}
    paid = lines["payment accepted"]
    assert paid.fields == {"service.name": "shop", "host.name": "web-01", "order.id": 42, "amount": 9.5,
                           "otel.scope.name": "shop.checkout", "level": "INFO",
                           "trace_id": "0af7651916cd43dd8448eb211c80319c"}
    assert paid.timestamp.isoformat() == "2026-03-01T10:00:02.500000+00:00"
    assert lines["card declined"].fields["level"] == "ERROR"  # severity number 17: the ERROR range


def test_json_encoding_and_partial_success(client, make_index_set):
    index_set, token = make_index_set("otel")
    body = {"resourceLogs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
                              "scopeLogs": [{"logRecords": [
                                  {"timeUnixNano": "1772359202500000000", "body": {"stringValue": "kept"},
                                   "attributes": [{"key": "count", "value": {"intValue": "7"}},
                                                  {"key": "msg", "value": {"stringValue": "an attribute named msg"}}]},
                                  {"body": {"stringValue": ""}},
                                  {"body": {"stringValue": "not a number"},
                                   "attributes": [{"key": "v", "value": {"doubleValue": "NaN"}}]},
                                  {"body": {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}}},
                              ]}]}]}
    r = post(client, token, json.dumps(body).encode(), "application/json")
    assert r.status_code == 200 and r["Content-Type"] == "application/json"
    assert r.json()["partialSuccess"]["rejectedLogRecords"] == "2"
    assert "no body" in r.json()["partialSuccess"]["errorMessage"]
    lines = {line.message: line for line in StoredLines().all(index_set)}
    assert set(lines) == {"kept", '{"k": "v"}'}
    assert lines["kept"].fields == {"service.name": "shop", "count": 7, "attributes.msg": "an attribute named msg"}


@pytest.mark.parametrize("body, content_type, status", [
    (b"\xff\x00garbage", "application/x-protobuf", 400),
    (b"{not json", "application/json", 400),
    (b"[]", "application/json", 400),
    # Another shape than resourceLogs[].scopeLogs[].logRecords[] of objects: not a record to reject.
    (b'{"resourceLogs": [1]}', "application/json", 400),
    (b'{"resourceLogs": {"scopeLogs": []}}', "application/json", 400),
    (b'{"resourceLogs": [{"scopeLogs": ["x"]}]}', "application/json", 400),
    (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [null]}]}]}', "application/json", 400),
    (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": {"body": {}}}]}]}', "application/json", 400),
    (b'{"resourceLogs": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json", 400),
    (b"x", "text/plain", 415),
])
def test_bad_requests_are_refused_whole(client, make_index_set, body, content_type, status):
    """With a google.rpc.Status in the request's encoding, as OTLP/HTTP says of every refusal."""
    _, token = make_index_set("otel")
    r = post(client, token, body, content_type)
    assert r.status_code == status
    code, message = refusal(r)
    assert code == code_pb2.INVALID_ARGUMENT and message
    assert r["Content-Type"] == ("application/x-protobuf" if content_type == "application/x-protobuf" else "application/json")
    assert StoredLines().count() == 0


def test_without_the_ingest_token_nothing_is_stored(client, make_index_set, admin_token):
    make_index_set("otel")
    body = request_with([{"body": "x"}]).SerializeToString()
    anonymous = client.post("/v1/logs", data=body, content_type="application/x-protobuf")
    unknown = post(client, "not-a-token-of-anything", body)
    not_an_ingest_token = post(client, admin_token, body)
    assert [r.status_code for r in (anonymous, unknown, not_an_ingest_token)] == [401, 401, 403]
    assert [refusal(r)[0] for r in (anonymous, unknown, not_an_ingest_token)] == [
        code_pb2.UNAUTHENTICATED, code_pb2.UNAUTHENTICATED, code_pb2.PERMISSION_DENIED]
    assert StoredLines().count() == 0


def test_a_wrong_method_is_refused_with_a_status_too(client):
    r = client.get("/v1/logs")
    assert r.status_code == 405 and r["Allow"] == "POST" and refusal(r)[0] == code_pb2.UNIMPLEMENTED


def test_a_broker_refusal_is_unavailable_with_when_to_retry(client, make_index_set, settings, monkeypatch):
    """UNAVAILABLE with Retry-After: what OTLP exporters retry on (a 503 of the pipeline's broker)."""
    from bklog.logs import ingest

    _, token = make_index_set("otel")
    settings.BKLOG_PIPELINE_ASYNC = True

    def refuse(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(ingest.celery, "send_task", refuse)
    r = post(client, token, request_with([{"body": "kept for later"}]).SerializeToString())
    assert r.status_code == 503 and r["Retry-After"]
    code, message = refusal(r)
    assert code == code_pb2.UNAVAILABLE and "broker" in message
    assert StoredLines().count() == 0
