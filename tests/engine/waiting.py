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
