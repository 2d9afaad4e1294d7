"""What the engine suite's tests share: waiting for a condition, and searching a test stack."""

from __future__ import annotations

import json
import time


def wait_until(predicate, what: str, timeout: float, every: float = 0.5):
    """predicate()'s first true value, polled every `every` seconds for `timeout` seconds at most."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return value


def search(stack, api_token: str, query: str, index_set: str = "app") -> dict:
    """A search on a tests/service/e2e_stack.py Stack, which must answer 200."""
    status, body = stack.get(f"/api/v1/index_sets/{index_set}/search?{query}", api_token)
    assert status == 200, body
    return json.loads(body)


def ship_through_an_outage(stack, api_token: str, app_log) -> None:
    """What a file shipper under test must get through: 100 lines written and searchable, then
    gunicorn stopped for 20 s while 100 more are written, started again, and every line of the
    200 searchable once (the shipper retries what was not acknowledged, and nothing twice)."""
    with app_log.open("a") as out:
        for i in range(100):
            out.write(f"first part line {i} order={i}\n")
    wait_until(lambda: search(stack, api_token, "q=first&size=1")["total"] == 100, "the first 100 lines", 120)

    assert stack.stop("gunicorn") == 0  # 20 s without BK LOG while the file grows
    with app_log.open("a") as out:
        for i in range(100):
            out.write(f"second part line {i}\n")
            out.flush()
            time.sleep(0.1)
    time.sleep(10)
    stack.start_gunicorn()
    wait_until(lambda: search(stack, api_token, "q=second&size=1")["total"] >= 100, "the lines written during the outage", 180)
    time.sleep(5)  # anything sent twice would have arrived by now
    assert search(stack, api_token, "q=line&size=1")["total"] == 200  # every line, once
