"""Settings for Adapter Hub, read from 12-factor environment variables.

Every variable has a default that gives the *embedded* mode: SQLite and a blob directory under
`var/`, and a Celery broker on the local filesystem, so a fresh checkout runs with no server.
Production sets DATABASE_URL, STORAGE_BACKEND=s3 (with S3_*), CELERY_BROKER_URL and SECRET_KEY.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("HUB_VAR_DIR", BASE_DIR / "var"))

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env(name: str, default: str = "") -> str:
    """A string variable; NAME_FILE, when set, names a file holding the value (Docker/K8s secrets)."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: str) -> bool:
    value = env(name, default).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")


def envint(name: str, default: str) -> int:
    value = env(name, default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DEBUG = envbool("DEBUG", "True")
SECRET_KEY = env("SECRET_KEY", "dev-only-insecure-secret-key-change-me" if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]" if not DEBUG else "*")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "registry",
    # The demo's commands (bootstrap_demo, seed_demo), which `make run` calls.
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so it sees exceptions of the views themselves: JSON errors on machine routes.
    "hub.middleware.JsonErrorsMiddleware",
]

ROOT_URLCONF = "hub.urls"
WSGI_APPLICATION = "hub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "hub" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
            # `{% load formatting %}`: sizes and ages by the rule ahub prints with (client/formatting.py).
            "libraries": {"formatting": "hub.web.templatetags.formatting"},
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'hub.sqlite3'}"),
        # Persistent connections, checked before each request reuses one: after the database
        # restarts or a connection is cut, the next request opens a new one instead of failing.
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", "60"),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # (Its folder is made when Django starts, in registry/apps.py: importing settings writes nothing.)
    # WAL and a busy timeout let the web server and the Celery worker share the embedded database.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }

if test_database := env("TEST_DATABASE_NAME", ""):
    # Lets several test runs share one PostgreSQL server without dropping each other's database.
    DATABASES["default"]["TEST"] = {"NAME": test_database}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(VAR_DIR / "static")))
# Searches counted on write (registry/facet_counts.py): a search whose live count reaches this many
# matches is noted, and Celery beat has the database count the most searched up to SEARCH_COUNTED_MAX;
# a first count waits at most SEARCH_PROMOTE_WAIT_SECONDS for transactions older than it to end.
SEARCH_COUNT_MIN_MATCHES = envint("SEARCH_COUNT_MIN_MATCHES", "5000")
SEARCH_COUNTED_MAX = envint("SEARCH_COUNTED_MAX", "20")
SEARCH_PROMOTE_WAIT_SECONDS = envint("SEARCH_PROMOTE_WAIT_SECONDS", "30")

# The web catalog's CSS and JavaScript (hub/ is not an app, so its static folder is listed here).
STATICFILES_DIRS: list[Path | tuple[str, Path]] = [BASE_DIR / "hub" / "static"]
# plotly.js for the adapter page's charts, from the installed `plotly` package (no CDN, no vendored
# copy): {% static "vendor/plotly/plotly.min.js" %}. find_spec locates it without importing plotly.
_plotly = importlib.util.find_spec("plotly")
if _plotly is not None and _plotly.submodule_search_locations:
    STATICFILES_DIRS.append(("vendor/plotly", Path(_plotly.submodule_search_locations[0]) / "package_data"))

LOGIN_URL = "/admin/login/"

# --- Blob storage -------------------------------------------------------------------------------
STORAGE_BACKEND = env("STORAGE_BACKEND", "local")
if STORAGE_BACKEND not in {"local", "s3"}:
    raise ImproperlyConfigured(f"STORAGE_BACKEND={STORAGE_BACKEND!r}: use 'local' or 's3'")
BLOB_STORE = {
    "BACKEND": STORAGE_BACKEND,
    "ROOT": env("BLOB_DIR", str(VAR_DIR / "blobs")),
    "BUCKET": env("S3_BUCKET", "adapter-hub"),
    "ENDPOINT_URL": env("S3_ENDPOINT_URL", "") or None,
    "ACCESS_KEY": env("S3_ACCESS_KEY_ID", "") or None,
    "SECRET_KEY": env("S3_SECRET_ACCESS_KEY", "") or None,
    "REGION": env("S3_REGION", "us-east-1"),
    "CREATE_BUCKET": envbool("S3_CREATE_BUCKET", "False"),
    # Parts of one upload the hub (or a worker publishing a composition) sends at once.
    "PART_WORKERS": envint("S3_PART_WORKERS", "4"),
}
# Seconds a presigned download URL stays valid.
PRESIGNED_URL_EXPIRES = envint("PRESIGNED_URL_EXPIRES", "300")
# Unreferenced blobs younger than this are spared by gc_blobs: a push may have stored them and
# not yet committed its version row.
GC_GRACE_SECONDS = envint("GC_GRACE_SECONDS", "3600")

# --- Base models --------------------------------------------------------------------------------
# Pushes naming an unregistered base model are refused (422 unknown_base_model) unless this is
# true: then the name is admitted as an "unverified" base model, without shape checks.
ALLOW_UNREGISTERED_BASE_MODELS = envbool("ALLOW_UNREGISTERED_BASE_MODELS", "False")

# --- Upload limits (bytes) ----------------------------------------------------------------------
MAX_FILE_SIZE = envint("MAX_FILE_SIZE", str(2 * 1024**3))
MAX_VERSION_SIZE = envint("MAX_VERSION_SIZE", str(4 * 1024**3))
MAX_FILES_PER_VERSION = envint("MAX_FILES_PER_VERSION", "64")
# Django's own caps apply to non-file form fields only; files stream to temp files on disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", str(10 * 1024**2))
FILE_UPLOAD_MAX_MEMORY_SIZE = envint("FILE_UPLOAD_MAX_MEMORY_SIZE", str(2 * 1024**2))
FILE_UPLOAD_TEMP_DIR = env("FILE_UPLOAD_TEMP_DIR", "") or None
DATA_UPLOAD_MAX_NUMBER_FILES = MAX_FILES_PER_VERSION + 1
# Resumable uploads (the client's push): part size, session lifetime, presigned part URL lifetime.
UPLOAD_PART_SIZE = envint("UPLOAD_PART_SIZE", str(64 * 1024**2))
UPLOAD_SESSION_SECONDS = envint("UPLOAD_SESSION_SECONDS", str(24 * 3600))
UPLOAD_URL_EXPIRES = envint("UPLOAD_URL_EXPIRES", "3600")

# --- API ----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "registry.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_PAGINATION_CLASS": "registry.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "EXCEPTION_HANDLER": "registry.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "registry.api.schema.HubAutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": ["registry.api.throttles.HubRateThrottle"],
}
# Requests per user (per address when anonymous) on the REST API; "" turns a limit off.
THROTTLE_RATES = {
    "read": env("THROTTLE_READ", "6000/min"),
    "write": env("THROTTLE_WRITE", "600/min"),
    "jobs": env("THROTTLE_JOBS", "120/min"),
}
# Compositions and evaluations one user may have queued or running at once (429 beyond).
MAX_ACTIVE_JOBS_PER_USER = envint("MAX_ACTIVE_JOBS_PER_USER", "50")
if env("CACHE_URL"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": env("CACHE_URL")}}
SPECTACULAR_SETTINGS = {
    "TITLE": "Adapter Hub API",
    "DESCRIPTION": "Registry of parameter-efficient fine-tuning adapters: push, pull, search, compose.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One name per choice set, wherever a field uses it (without these: StatusF6eEnum, Kind367Enum).
    "ENUM_NAME_OVERRIDES": {
        "VisibilityEnum": "registry.models.core.Visibility",
        "JobStatusEnum": "registry.models.compositions.JobStatus",
        "RoleEnum": "registry.models.core.Role",
        "LineageRoleEnum": "registry.models.compositions.LineageRole",
        "SuiteKindEnum": "registry.models.evals.SuiteKind",
        "UploadStatusEnum": "registry.models.uploads.UploadStatus",
        "ValidationEnum": "registry.models.core.Validation",
        "TokenScopeEnum": "registry.models.core.TokenScope",
    },
    # Swagger UI: the Authorize button keeps the token across reloads; no badge from the online validator.
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True, "validatorUrl": None},
    # ReDoc with the system's fonts (hub/templates/drf_spectacular/redoc.html drops the Google Fonts links).
    "REDOC_UI_SETTINGS": {
        "theme": {
            "typography": {
                "fontFamily": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
                "headings": {"fontFamily": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"},
            }
        }
    },
}

# --- Celery -------------------------------------------------------------------------------------
# The embedded default is kombu's filesystem transport: the web process and the worker exchange
# messages through files under var/broker, so `make run` needs no Redis.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_DIR = Path(env("CELERY_BROKER_DIR", str(VAR_DIR / "broker")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # One folder for in and out: producers and consumers are different processes.
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", "False")
# Seconds a composition may run before Celery stops it (soft limit: the job is marked failed).
COMPOSE_TIME_LIMIT = envint("COMPOSE_TIME_LIMIT", "3600")
# Seconds a worker holds a running job without renewing; a redelivered task takes over after it.
JOB_LEASE_SECONDS = envint("JOB_LEASE_SECONDS", "120")
# The reconciler (registry/reconcile.py, run by Celery beat every JOB_RECONCILE_SECONDS) sends a
# queued job's task again after JOB_REDISPATCH_SECONDS, and gives a job up after JOB_MAX_ATTEMPTS.
JOB_RECONCILE_SECONDS = envint("JOB_RECONCILE_SECONDS", "60")
JOB_REDISPATCH_SECONDS = envint("JOB_REDISPATCH_SECONDS", "300")
JOB_MAX_ATTEMPTS = envint("JOB_MAX_ATTEMPTS", "5")
# Redis redelivers an unacknowledged task (a worker killed mid-job) after this many seconds; it
# must exceed the longest task, or a slow task would run twice.
CELERY_VISIBILITY_TIMEOUT = envint("CELERY_VISIBILITY_TIMEOUT", str(2 * 3600))
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
        # How often a worker looks for messages a dead worker left unacknowledged.
        "unacked_restore_interval": envint("CELERY_UNACKED_RESTORE_INTERVAL", "10"),
        "unacked_restore_throttle": envint("CELERY_UNACKED_RESTORE_THROTTLE", "10"),
    }

# --- Evaluation ---------------------------------------------------------------------------------
# Folders holding base model weights for eval workers (`<root>/<org>/<name>`, `<root>/<org>--<name>`
# or a Hugging Face cache); nothing is ever downloaded.
HUB_BASE_MODEL_PATHS = envlist("HUB_BASE_MODEL_PATHS", str(VAR_DIR / "models"))
# A worker fetches a base model it has no local copy of from the blob store into this folder,
# evicting the least recently used ones beyond WORKER_BASE_CACHE_BYTES.
WORKER_BASE_CACHE_DIR = Path(env("WORKER_BASE_CACHE_DIR", str(VAR_DIR / "base-cache")))
WORKER_BASE_CACHE_BYTES = envint("WORKER_BASE_CACHE_BYTES", str(100 * 1024**3))
# Adapter files a worker staged for compositions and evaluations, by sha256: a second job over the
# same inputs downloads nothing. Least recently used blobs go beyond WORKER_BLOB_CACHE_BYTES.
WORKER_BLOB_CACHE_DIR = Path(env("WORKER_BLOB_CACHE_DIR", str(VAR_DIR / "blob-cache")))
WORKER_BLOB_CACHE_BYTES = envint("WORKER_BLOB_CACHE_BYTES", str(20 * 1024**3))
# CPU threads of one composition (composer.threads): one, measured fastest under load; a host runs
# compositions side by side as worker processes (`celery worker -c N`). 0 = torch's default.
COMPOSER_THREADS = envint("COMPOSER_THREADS", "1")
# Blobs a worker fetches at once when staging a job's inputs.
WORKER_FETCH_THREADS = envint("WORKER_FETCH_THREADS", "4")
EVAL_DEVICE = env("EVAL_DEVICE", "auto")  # auto: CUDA when present
EVAL_BATCH_SIZE = envint("EVAL_BATCH_SIZE", "16")
# "4bit": load base models in 4-bit NF4 (CUDA and the `gpu` extra's bitsandbytes) for every adapter;
# QLoRA adapters are evaluated so whenever possible. The precision used is recorded with each score.
EVAL_QUANTIZE = env("EVAL_QUANTIZE", "")
EVAL_MODEL_CACHE_SIZE = envint("EVAL_MODEL_CACHE_SIZE", "2")
EVAL_SUITE_MAX_BYTES = envint("EVAL_SUITE_MAX_BYTES", str(50 * 1024**2))
EVAL_TIME_LIMIT = envint("EVAL_TIME_LIMIT", "3600")
# A composed version is validated when it reaches this fraction of its best parent on each suite.
VALIDATION_FRACTION = float(env("VALIDATION_FRACTION", "0.95"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
