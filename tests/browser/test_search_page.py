"""The search page in a real browser (issue 19): Debian's chromium through its chromedriver, driven
by Selenium, against gunicorn with the shipped config, WhiteNoise serving the collected static
files, and an index set with two hours of lines. One person per module, the steps in order, as a
person would take them; screenshots go to docs/screenshots (the README shows one)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from e2e_stack import ROOT, Stack, http

PASSWORD = "correct horse battery staple"
SCREENSHOTS = ROOT / "docs" / "screenshots"
# axe-core, the accessibility engine, from the npm registry (pinned by version and digest; cached).
AXE_VERSION = "4.14.1"
AXE_SHA512 = "FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
LINES = 120  # over two hours; the page shows 50 at a time


def axe_source() -> str:
    cached = Path.home() / ".cache" / "bklog-deploy" / f"axe-core-{AXE_VERSION}.min.js"
    if not cached.exists():
        url = f"https://registry.npmjs.org/axe-core/-/axe-core-{AXE_VERSION}.tgz"
        tarball = urllib.request.urlopen(url, timeout=60).read()
        assert base64.b64encode(hashlib.sha512(tarball).digest()).decode() == AXE_SHA512, "axe-core tarball digest"
        with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
            source = archive.extractfile("package/axe.min.js").read()
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(source)
    return cached.read_text()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("page"), None)
    stack.bklog("collectstatic", "--noinput", "-v0")
    stack.app_token = stack.bklog("create_index_set", "app", "--parse", "json")
    stack.bklog("create_index_set", "secret")
    stack.bklog("shell", "-c", f"""
from django.contrib.auth.models import Group, User
from bklog.logs.models import IndexSet
ops = Group.objects.create(name="ops")
IndexSet.objects.get(name="app").groups.add(ops)
User.objects.create_user("alice", password={PASSWORD!r}).groups.add(ops)
""")
    stack.start_gunicorn()
    now = datetime.now(timezone.utc)
    lines = [{"@timestamp": (now - timedelta(minutes=i)).isoformat(), "service": "db" if i % 3 == 0 else "api",
              "message": f"request {i} {'error timed out' if i % 2 else 'ok'}"} for i in range(LINES)]
    status, body = http("POST", f"{stack.url}/api/v1/index_sets/app/ingest", json.dumps(lines).encode(),
                        {"Authorization": f"Bearer {stack.app_token}", "Content-Type": "application/json"})
    assert status in (200, 202), body
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def browser(stack):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    yield driver
    driver.quit()


def wait(browser, predicate, what: str, timeout: float = 15):
    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(lambda _: predicate())
    except Exception:
        raise AssertionError(f"timed out waiting for {what}; page at {browser.current_url}") from None


def rows(browser) -> list[str]:
    return [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#hits tbody tr")]


def summary(browser) -> int:
    text = browser.find_element(By.ID, "summary").text
    return int(text.split()[0].rstrip("+")) if text.endswith("match") else -1


def searches(browser) -> int:
    return int(browser.find_element(By.TAG_NAME, "body").get_attribute("data-searches") or 0)


def searched(browser, action, what: str) -> None:
    """Do `action` (a click, a drag ...) and wait until the search it starts is answered."""
    before = searches(browser)
    action()
    wait(browser, lambda: searches(browser) > before, what)


def search_for(browser, query: str) -> None:
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys(query)
    searched(browser, box.submit, f"the results of {query!r}")


def fetch(browser, method: str, path: str, with_csrf: bool) -> int:
    """The status of a request the page's script could send, with the person's session."""
    return browser.execute_async_script("""
        const [method, path, withCsrf, done] = arguments;
        const headers = {"Content-Type": "application/json"};
        if (withCsrf) headers["X-CSRFToken"] = document.querySelector('meta[name="csrf-token"]').content;
        fetch(path, {method, headers, credentials: "same-origin", body: method === "GET" ? undefined : "{}"})
          .then((r) => done(r.status), () => done(-1));""", method, path, with_csrf)


def test_1_a_person_logs_in_and_sees_only_the_granted_index_sets(stack, browser):
    browser.get(stack.url + "/")
    assert browser.current_url.startswith(stack.url + "/login/")
    browser.find_element(By.ID, "id_username").send_keys("alice")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(browser, lambda: summary(browser) == LINES, "every line of the last 24 hours")
    options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#index-set option")]
    assert options == ["app"]
    assert len(rows(browser)) == 50 and rows(browser)[0].split("\n")[1] == "request 0 ok"  # newest first


def test_2_a_search_marks_its_words_and_a_syntax_error_is_shown_where_it_is(browser):
    search_for(browser, "timed")
    assert summary(browser) == LINES // 2
    assert {m.text for m in browser.find_elements(By.CSS_SELECTOR, "#hits mark")} == {"timed"}
    assert "q=timed" in browser.current_url
    search_for(browser, "error AND (")
    error = browser.find_element(By.ID, "q-error")
    wait(browser, error.is_displayed, "the syntax error")
    assert "malformed query" in error.text and error.find_element(By.CLASS_NAME, "where").text.endswith("^")
    assert browser.find_element(By.ID, "q").get_attribute("aria-invalid") == "true"


def test_3_a_field_value_clicked_becomes_a_filter(browser):
    search_for(browser, "error")
    first = browser.find_element(By.CSS_SELECTOR, "#hits tbody tr .expand")
    fields = browser.find_element(By.CSS_SELECTOR, "#hits tbody tr .fields")
    assert not fields.is_displayed() and first.get_attribute("aria-expanded") == "false"
    first.click()
    assert fields.is_displayed() and first.get_attribute("aria-expanded") == "true"
    field = browser.find_element(By.XPATH, "//div[@class='fields']/button[@class='field' and starts-with(., 'service: ')]")
    searched(browser, field.click, "the filtered results")
    assert "field.service=" in browser.current_url
    service = browser.current_url.split("field.service=", 1)[1].split("&", 1)[0]
    expected = sum(1 for i in range(LINES) if i % 2 and (("db" if i % 3 == 0 else "api") == service))
    assert summary(browser) == expected
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "search-page.png"))
    searched(browser, browser.find_element(By.CSS_SELECTOR, "#filters button").click, "the filter removed")
    assert "field.service" not in browser.current_url and summary(browser) == LINES // 2


def test_4_dragging_across_the_histogram_narrows_the_range(browser):
    search_for(browser, "")
    svg = browser.find_element(By.ID, "histogram")
    width = svg.size["width"]
    # From the right end (now) leftwards over a tenth of the 24 hours: the newest ~2.4 hours hold
    # every line; a sliver at the far right holds the newest only.
    searched(browser, ActionChains(browser).move_to_element_with_offset(svg, width // 2 - 2, 0).click_and_hold()
             .move_by_offset(-(width // 60), 0).release().perform, "the zoomed-in range")
    assert "start=" in browser.current_url and 0 < summary(browser) < LINES
    assert browser.find_element(By.ID, "range").get_attribute("value") == "custom"


def test_5_the_next_page_follows_by_cursor(browser):
    searched(browser, lambda: Select(browser.find_element(By.ID, "range")).select_by_value("24h"), "the whole range again")
    assert summary(browser) == LINES
    browser.find_element(By.ID, "more").click()
    wait(browser, lambda: len(rows(browser)) == 100, "the second page under the first")
    assert len(set(rows(browser))) == 100


def test_6_live_tail_shows_a_line_ingested_after_the_page_loaded(stack, browser):
    browser.execute_script("window.scrollTo(0, 0)")
    browser.find_element(By.ID, "tail").click()
    assert "tail=1" in browser.current_url
    line = {"@timestamp": datetime.now(timezone.utc).isoformat(), "service": "api", "message": "tail newcomer"}
    http("POST", f"{stack.url}/api/v1/index_sets/app/ingest", json.dumps([line]).encode(),
         {"Authorization": f"Bearer {stack.app_token}", "Content-Type": "application/json"})
    wait(browser, lambda: "tail newcomer" in rows(browser)[0], "the new line on top", timeout=20)
    # Scrolled back to older lines: paused (nothing moves under the reader's eyes), then resumed.
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    line = {**line, "@timestamp": datetime.now(timezone.utc).isoformat(), "message": "tail while away"}
    http("POST", f"{stack.url}/api/v1/index_sets/app/ingest", json.dumps([line]).encode(),
         {"Authorization": f"Bearer {stack.app_token}", "Content-Type": "application/json"})
    time.sleep(7)  # two polls of the tail
    assert "tail while away" not in rows(browser)[0]
    browser.execute_script("window.scrollTo(0, 0)")
    wait(browser, lambda: "tail while away" in rows(browser)[0], "the line held back, once scrolled up", timeout=20)
    browser.find_element(By.ID, "tail").click()


def test_7_export_downloads_the_searched_lines(stack, browser):
    search_for(browser, "timed")
    browser.find_element(By.ID, "export").click()
    link = wait(browser, lambda: browser.find_elements(By.ID, "export-download"),
                f"the export's download link ({browser.find_element(By.ID, 'export-status').text})", timeout=30)[0]
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in browser.get_cookies())
    status, body = http("GET", link.get_attribute("href"), headers={"Cookie": cookies})
    assert status == 200
    exported = [json.loads(line) for line in body.decode().splitlines()]
    assert len(exported) == LINES // 2 and all("timed out" in line["message"] for line in exported)


def test_8_another_groups_index_set_and_a_forged_post_are_refused(browser):
    assert fetch(browser, "GET", "/api/v1/index_sets/app/search", with_csrf=False) == 200
    assert fetch(browser, "GET", "/api/v1/index_sets/secret/search", with_csrf=False) == 403
    assert fetch(browser, "POST", "/api/v1/index_sets/app/exports", with_csrf=False) == 403
    assert fetch(browser, "POST", "/api/v1/index_sets/app/exports", with_csrf=True) == 202


def test_9_slash_focuses_the_query_box_and_axe_finds_nothing_serious(browser):
    browser.execute_script("document.activeElement.blur()")
    ActionChains(browser).send_keys("/").perform()
    assert browser.switch_to.active_element.get_attribute("id") == "q"
    browser.execute_script(axe_source())
    result = browser.execute_async_script("const done = arguments[0]; axe.run(document).then(done, (e) => done({error: String(e)}));")
    assert "error" not in result, result
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
               if v["impact"] in ("serious", "critical")]
    assert not serious, serious


def test_page_weight_before_results_is_small(stack, browser):
    """Everything the page loads before its first search, compressed as served (WhiteNoise's .gz)."""
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))"
        ".filter((e) => !e.name.includes('/api/')).map((e) => e.encodedBodySize || e.transferSize || 0)")
    assert sum(loaded) < 200 * 1024, loaded
