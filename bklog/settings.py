"""Django settings, all from the environment through bklog.config (see docs/configuration.md)."""

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from bklog import connections
from bklog.config import Config, ConfigError

try:
    CONFIG = Config()
    CONFIG.validate()
except ConfigError as exc:
    raise ImproperlyConfigured(f"bklog configuration: {exc}") from None

BKLOG_ENV = CONFIG.env
DATA_DIR: Path = CONFIG.data_dir
try:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
except OSError as exc:
    raise ImproperlyConfigured(f"bklog configuration: BKLOG_DATA_DIR={DATA_DIR} cannot be created: {exc}") from None
DEBUG = CONFIG["BKLOG_DEBUG"]
SECRET_KEY = CONFIG["BKLOG_SECRET_KEY"] or "dev-insecure-secret-key-do-not-use-in-production"
ALLOWED_HOSTS = CONFIG["BKLOG_ALLOWED_HOSTS"] or (["*"] if BKLOG_ENV == "dev" else [])

INSTALLED_APPS = [
    "bklog.logs",  # first: its templates (registration/, admin/base_site.html) win over Django's
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "bklog.logs.errors.JsonErrorsMiddleware",  # outermost: every refusal JSON, never the debug page
    "bklog.observability.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # The API's views are csrf_exempt (tokens are not sent by browsers on their own); a request that
    # comes with a session is checked by the API itself (bklog/logs/callers.py).
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "bklog.urls"
WSGI_APPLICATION = "bklog.wsgi.application"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
APPEND_SLASH = False
# People: the search page (`/` for a browser) and the admin (bklog/logs/pages.py, admin.py).
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
SESSION_COOKIE_AGE = CONFIG["BKLOG_SESSION_SECONDS"]
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # the page reads the token from its own HTML, never from the cookie
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# One PostgreSQL host, or a Patroni cluster's hosts (the connection finds the primary), or SQLite.
DATABASES = {
    "default": connections.database(CONFIG["DATABASE_URL"] or f"sqlite:///{DATA_DIR / 'bklog.sqlite3'}",
                                    conn_max_age=CONFIG["BKLOG_DB_CONN_MAX_AGE"],
                                    transaction_pooling=CONFIG["BKLOG_DB_TRANSACTION_POOLING"])
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets searches read while a batch is written; the busy timeout rides out writer bursts.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0 if DATABASES["default"]["NAME"] == ":memory:" else 600
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-bklog.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = CONFIG["REDIS_URL"]
# One Redis server, or the master of a Sentinel group (bklog/connections.py).
REDIS_TARGET = (connections.redis_target(REDIS_URL, CONFIG["BKLOG_REDIS_SENTINEL_MASTER"], CONFIG["BKLOG_REDIS_TLS_CA"])
                if REDIS_URL else None)
if REDIS_TARGET and REDIS_TARGET.is_sentinel:
    CACHES = {"default": {"BACKEND": "bklog.connections.SentinelRedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": {"master_name": REDIS_TARGET.master_name, "tls_ca": REDIS_TARGET.tls_ca}}}
elif REDIS_TARGET:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": REDIS_TARGET.tls_options()}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = False

STATIC_URL = "/static/"
STATIC_ROOT = CONFIG["BKLOG_STATIC_ROOT"] or str(DATA_DIR / "static")
STATICFILES_DIRS = [str(Path(__file__).resolve().parent / "static")]
# collectstatic writes each file under a name with its content's hash as well, and the pages ask
# for those (DEBUG too): browsers keep them for a year (nginx and WhiteNoise say so), and a new
# release's files have new names.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "bklog.static_files.HashedStaticFiles"},
}

# Ingest bodies are checked by the view (413 with a JSON error); Django's own cap sits above it.
DATA_UPLOAD_MAX_MEMORY_SIZE = CONFIG["BKLOG_INGEST_MAX_BYTES"] + 1024 * 1024
# The service's own limits, timeouts and search backend, as settings of their variables' names
# (bklog/config.py declares each with its type and default; docs/configuration.md lists them).
globals().update({name: value for name, value in CONFIG.values.items()
                  if name.startswith(("BKLOG_INGEST_", "BKLOG_SEARCH_", "BKLOG_EXPORT_", "BKLOG_INLINE_", "BKLOG_OPENSEARCH_",
                                      "BKLOG_LOGIN_"))})
BKLOG_EXPORT_DIR = DATA_DIR / "exports"
BKLOG_PIPELINE_ASYNC = CONFIG.pipeline_async

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HSTS on answers to HTTPS requests (nginx terminates TLS and says so in X-Forwarded-Proto).
SECURE_HSTS_SECONDS = CONFIG["BKLOG_HSTS_SECONDS"]
# nginx redirects HTTP to HTTPS for clients; gunicorn itself is reached over a unix socket or
# loopback, where a redirect would only break nginx's and Consul's own health checks.
SILENCED_SYSTEM_CHECKS = ["security.W008"]
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE = BKLOG_ENV != "dev"

# Celery: routes, limits and the beat schedule come from app.yml (bklog/celery_app.py).
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not BKLOG_PIPELINE_ASYNC
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CONFIG["BKLOG_CELERY_VISIBILITY_TIMEOUT"],
                                   **(connections.celery_transport_options(REDIS_TARGET) if REDIS_TARGET else {})}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_USE_SSL = connections.celery_broker_ssl(REDIS_TARGET) if REDIS_TARGET else None
# Workers subscribe to no broadcast channel: no remote control here, and the worker programs run
# with --without-gossip --without-mingle. redis-py 8 reads a subscription with no timeout and, on
# a connection error, reconnects and reads again inside the same call: when the Redis master's host
# vanished, a worker sat for ever in that read on a healthy, silent connection to the new master
# and took no task again (seen in molecule/ha). Queues are read with BRPOP, whose errors reach
# Celery, which reconnects through the sentinels.
CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Each periodic run claimed in the database before it is sent: never twice in a period, whichever
# host's beat sends it (bklog/beat.py).
CELERY_BEAT_SCHEDULER = "bklog.beat:ClaimingScheduler"
# No result backend, so no results to expire: without this beat adds celery.backend_cleanup, a
# daily crontab entry of its own outside app.yml's schedule.
CELERY_RESULT_EXPIRES = None
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stdout"], "level": CONFIG["BKLOG_LOG_LEVEL"]},
    # opensearch-py logs every request at INFO (one line per bulk, shipped back by a log agent) and
    # each failed attempt with its traceback at WARNING; BK LOG says what failed itself.
    "loggers": {"django.db.backends": {"level": "INFO"}, "opensearch": {"level": "ERROR"}},
}
