"""People, not only tokens (issue 19): Django's users, groups and sessions in front of the same API,
index sets granted to groups, CSRF on what a session changes, the admin, the first admin from a
deploy's vault. The page itself is driven in a real browser by tests/browser."""

import io
import json

import pytest
from conftest import auth
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.test import Client

from bklog.logs.models import ApiToken, IndexSet, hash_token

PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.one_backend


@pytest.fixture(autouse=True)
def _quick_passwords(settings):
    # Django's real hasher takes a good part of a second per password, on purpose; these tests
    # are about who may do what, not about hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def people(db, make_index_set):
    """ops sees app (granted to its group), not secret; staff sees both."""
    app, app_token = make_index_set("app")
    secret, _ = make_index_set("secret")
    ops = Group.objects.create(name="ops")
    app.groups.add(ops)
    alice = User.objects.create_user("alice", password=PASSWORD)
    alice.groups.add(ops)
    User.objects.create_user("boss", password=PASSWORD, is_staff=True)
    return {"app_token": app_token}


def logged_in(username: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=username, password=PASSWORD)
    return client


def csrf_token(client: Client) -> str:
    page = client.get("/", HTTP_ACCEPT="text/html").content.decode()
    return page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


def test_a_browser_at_the_root_is_sent_to_log_in_and_shippers_still_get_their_answer(people, reader_token):
    client = Client()
    page = client.get("/?q=error", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert page.status_code == 302 and page["Location"] == "/login/?next=/%3Fq%3Derror"
    assert "Accept" in page["Vary"]
    shipper = client.get("/", HTTP_ACCEPT="application/json", **auth(reader_token))
    assert shipper.status_code == 200 and shipper.json()["version"]["number"]
    anonymous_program = client.get("/")
    assert anonymous_program.status_code == 401 and anonymous_program["Content-Type"].startswith("application/json")


def test_logging_in_shows_the_page_with_only_the_granted_index_sets(people):
    client = Client()
    refused = client.post("/login/", {"username": "alice", "password": "wrong"})
    assert refused.status_code == 200 and b"did not match" in refused.content
    logged = client.post("/login/", {"username": "alice", "password": PASSWORD, "next": "/?q=x"})
    assert logged.status_code == 302 and logged["Location"] == "/?q=x"
    page = client.get("/", HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    config = json.loads(page.content.decode().split('<script id="page-config" type="application/json">', 1)[1].split("</script>", 1)[0])
    assert config["index_sets"] == ["app"]
    assert "script-src" not in page["Content-Security-Policy"] and "default-src 'self'" in page["Content-Security-Policy"]
    assert logged_in("boss").get("/api/v1/index_sets").json()["index_sets"][1]["name"] == "secret"


def test_a_session_reads_only_what_its_groups_are_granted(people):
    alice = logged_in("alice")
    assert [s["name"] for s in alice.get("/api/v1/index_sets").json()["index_sets"]] == ["app"]
    assert alice.get("/api/v1/index_sets/app/search", {"q": "x"}).status_code == 200
    for path in ("/api/v1/index_sets/secret/search", "/api/v1/index_sets/secret/histogram", "/api/v1/index_sets/secret"):
        refused = alice.get(path)
        assert refused.status_code == 403 and "may not search index set 'secret'" in refused.json()["error"], path
    # Creating index sets is an admin's: a person who is not a superuser is refused, CSRF token or not.
    made = alice.post("/api/v1/index_sets", json.dumps({"name": "mine"}), content_type="application/json",
                      HTTP_X_CSRFTOKEN=csrf_token(alice))
    assert made.status_code == 403 and not IndexSet.objects.filter(name="mine").exists()


def test_what_a_session_changes_needs_the_pages_csrf_token(people):
    alice = logged_in("alice")
    body = json.dumps({"q": "x", "format": "jsonl"})
    forged = alice.post("/api/v1/index_sets/app/exports", body, content_type="application/json")
    assert forged.status_code == 403 and "CSRF" in forged.json()["error"]
    done = alice.post("/api/v1/index_sets/app/exports", body, content_type="application/json",
                      HTTP_X_CSRFTOKEN=csrf_token(alice))
    assert done.status_code == 202, done.content
    job = done.json()["id"]
    assert alice.get(f"/api/v1/exports/{job}").json()["status"] in ("done", "pending", "running")
    # Tokens need no CSRF token (a browser never sends one by itself), as before.
    tokens = Client(enforce_csrf_checks=True)
    reader = ApiToken.objects.create(name="r", role=ApiToken.ROLE_READER, token_hash=hash_token("r" * 24))
    assert reader and tokens.post("/api/v1/index_sets/app/exports", body, content_type="application/json",
                                  **auth("r" * 24)).status_code == 202


def test_an_export_of_an_index_set_not_granted_cannot_be_read_by_its_id(people, admin_token):
    job = Client().post("/api/v1/index_sets/secret/exports", json.dumps({"q": ""}), content_type="application/json",
                        **auth(admin_token)).json()["id"]
    alice = logged_in("alice")
    assert alice.get(f"/api/v1/exports/{job}").status_code == 403
    assert alice.get(f"/api/v1/exports/{job}/download").status_code == 403


def test_a_syntax_error_says_where(people):
    refused = logged_in("alice").get("/api/v1/index_sets/app/search", {"q": "error AND (timeout"})
    assert refused.status_code == 400
    assert refused.json()["param"] == "q" and refused.json()["position"] == 11


def test_logout_is_a_post_and_ends_the_session(people):
    alice = logged_in("alice")
    token = csrf_token(alice)
    assert alice.post("/logout/", HTTP_X_CSRFTOKEN=token).status_code == 302
    assert alice.get("/api/v1/index_sets").status_code == 401


def test_the_admin_makes_an_index_set_and_shows_its_token_once(people):
    User.objects.create_superuser("root", password=PASSWORD)
    client = Client()
    client.login(username="root", password=PASSWORD)
    bad = client.post("/admin/logs/indexset/add/", {"name": "Bad Name", "parse": "regex", "parse_pattern": "(",
                                                    "retention_days": 7, "message_field": "", "ingest_lines_per_second": 0})
    assert bad.status_code == 200 and not IndexSet.objects.filter(name="Bad Name").exists()
    made = client.post("/admin/logs/indexset/add/", {"name": "web", "parse": "plain", "parse_pattern": "", "retention_days": 3,
                                                     "message_field": "", "ingest_lines_per_second": 0,
                                                     "groups": [Group.objects.get(name="ops").pk]}, follow=True)
    assert made.status_code == 200
    text = made.content.decode()
    token = text.split("give it to its shippers now): ", 1)[1].split("<", 1)[0].strip()
    web = IndexSet.objects.get(name="web")
    assert web.ingest_token_hash == hash_token(token) and list(web.groups.values_list("name", flat=True)) == ["ops"]
    assert token not in client.get("/admin/logs/indexset/").content.decode()
    made = client.post("/admin/logs/apitoken/add/", {"name": "scripts", "role": "reader"}, follow=True).content.decode()
    api_token = made.split("(shown this once; keep it now): ", 1)[1].split("<", 1)[0].strip()
    assert ApiToken.objects.get(name="scripts").token_hash == hash_token(api_token)
    assert Client().get("/admin/logs/indexset/").status_code == 302  # to the admin's login
    client.raise_request_exception = False
    refused = client.get(f"/admin/logs/indexset/{web.pk}/delete/")
    assert refused.status_code == 403 and refused["Content-Type"] == "application/json"


def test_the_first_admin_from_the_vault_is_made_once_and_then_left_alone(db):
    def ensure(password):
        out = io.StringIO()
        call_command("ensure_admin", "admin", stdin=io.StringIO(password + "\n"), stdout=out)
        return out.getvalue().strip()

    with pytest.raises(CommandError, match="refused"):
        ensure("short")
    for password, said in ((PASSWORD, "created"), (PASSWORD, "unchanged"), (PASSWORD + " changed in the vault", "unchanged")):
        assert ensure(password) == said
    # The admin may have changed the password on the page since: a deploy does not set it back.
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password(PASSWORD)


def test_expired_sessions_are_cleared_by_the_periodic_task(people):
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from bklog.logs.tasks import clear_expired_sessions

    logged_in("alice")
    logged_in("boss")
    Session.objects.filter(pk=Session.objects.order_by("expire_date").first().pk).update(
        expire_date=timezone.now() - timedelta(seconds=1))
    assert clear_expired_sessions() == 1 and Session.objects.count() == 1


def test_a_user_name_guessed_at_is_refused_before_its_password_is_checked(people, settings, monkeypatch):
    from django.contrib.auth.backends import ModelBackend

    from django.core.cache import cache

    cache.clear()
    settings.BKLOG_LOGIN_FAILURE_LIMIT = 3
    checked = []
    real = ModelBackend.authenticate
    monkeypatch.setattr(ModelBackend, "authenticate", lambda self, *a, **kw: checked.append(1) or real(self, *a, **kw))
    client = Client()
    for _ in range(3):
        assert client.post("/login/", {"username": "Alice ", "password": "guess"}).status_code == 200
    assert len(checked) == 3
    locked = client.post("/login/", {"username": "alice", "password": PASSWORD})  # even the right one
    assert locked.status_code == 429 and locked["Content-Type"].startswith("text/html")
    assert b"Too many failed logins" in locked.content and int(locked["Retry-After"]) == settings.BKLOG_LOGIN_LOCKOUT_SECONDS
    assert len(checked) == 3  # no password was hashed for it
    # Another name is not affected, and a success clears its own count.
    assert client.post("/login/", {"username": "boss", "password": "guess"}).status_code == 200
    assert client.post("/login/", {"username": "boss", "password": PASSWORD}).status_code == 302
    cache.clear()
