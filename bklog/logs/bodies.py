"""Reading a request body within a size limit, whatever its framing and encoding.

- `Content-Length` over the limit: refused unread.
- `Transfer-Encoding: chunked` (no length): Django reads such a body as empty (it trusts only
  Content-Length), so it is read from the WSGI input, which gunicorn de-chunks, up to the limit.
- `Content-Encoding: gzip` / `deflate` (the Elasticsearch clients', Filebeat's and the OTLP
  exporters' default): decoded, with the limit applied to the decoded bytes as they are produced,
  so a small bomb that inflates to gigabytes is a 413 after `limit` bytes, never an out-of-memory.
"""

from __future__ import annotations

import zlib


class BodyError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _declared_length(request) -> int | None:
    raw = request.META.get("CONTENT_LENGTH")
    if raw in (None, ""):
        return None
    try:
        length = int(raw)
    except ValueError:
        raise BodyError(400, f"Content-Length {raw!r} is not a number") from None
    if length < 0:
        raise BodyError(400, f"Content-Length {raw!r} is not a number")
    return length


def _read_raw(request, limit: int, label: str) -> bytes:
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise BodyError(413, f"body of {declared} bytes exceeds the {label} of {limit} bytes")
    if declared is None and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        stream, pieces, size = request.META["wsgi.input"], [], 0
        while size <= limit:
            piece = stream.read(min(65536, limit + 1 - size))
            if not piece:
                break
            pieces.append(piece)
            size += len(piece)
        body = b"".join(pieces)
    else:
        body = request.read(limit + 1)
    if len(body) > limit:
        raise BodyError(413, f"body exceeds the {label} of {limit} bytes")
    return body


def _inflate(body: bytes, wbits: int, limit: int, encoding: str, label: str) -> bytes:
    out, data = [], body
    size = 0
    while data:
        inflater = zlib.decompressobj(wbits)
        try:
            piece = inflater.decompress(data, limit + 1 - size)
        except zlib.error as exc:
            raise BodyError(400, f"body is not valid {encoding} data: {exc}") from None
        size += len(piece)
        out.append(piece)
        if size > limit or inflater.unconsumed_tail:
            raise BodyError(413, f"body exceeds the {label} of {limit} bytes once decoded ({encoding})")
        if not inflater.eof:
            raise BodyError(400, f"body is truncated {encoding} data")
        data = inflater.unused_data  # gzip allows several members, one after another
    return b"".join(out)


def _decode(body: bytes, encoding: str, limit: int, label: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS, limit, "gzip", label)
    if encoding == "deflate":  # the zlib format by RFC 9110; raw deflate streams exist too
        wbits = zlib.MAX_WBITS if body[:1] and (body[0] & 0x0F) == 8 and int.from_bytes(body[:2], "big") % 31 == 0 else -zlib.MAX_WBITS
        return _inflate(body, wbits, limit, "deflate", label)
    raise BodyError(415, f"Content-Encoding {encoding!r} is not supported: send gzip, deflate or none")


def read_body(request, limit: int, label: str = "limit") -> bytes:
    """The decoded body, at most `limit` bytes before and after decoding; BodyError otherwise.
    `label` names the limit in the refusal ("ingest limit")."""
    try:
        body = _read_raw(request, limit, label)
    except BodyError:
        raise
    except Exception as exc:  # a malformed chunk, a client gone mid-body: the server's parser says which
        raise BodyError(400, f"the request body could not be read: {exc}") from None
    encodings = [e for e in request.META.get("HTTP_CONTENT_ENCODING", "").split(",") if e.strip()]
    for encoding in reversed(encodings):  # listed in the order they were applied
        body = _decode(body, encoding, limit, label)
    return body
