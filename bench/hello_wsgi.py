"""The baseline: a bare WSGI hello-world, served by the same gunicorn settings as the API."""


def application(environ, start_response):
    body = b'{"status": "ok"}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
