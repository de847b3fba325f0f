"""Settings for Stack Portal.

Everything comes from the environment (django-environ) with safe local
defaults, so a fresh checkout runs with SQLite and the local Redis. With
``PORTAL_PRODUCTION=true`` the defaults tighten: a missing SECRET_KEY is an
error and ``manage.py check --deploy`` has nothing to report.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

#: The environment variables this module reads: the portal's own settings.
#: Services never receive them (see stacks.secrets.environ_for), and an
#: environment's settings.process_variables may not name them.
PORTAL_OWN_VARIABLES = (
    "ALLOWED_HOSTS",
    "CHANNELS_PREFIX",
    "CSRF_TRUSTED_ORIGINS",
    "DATABASE_URL",
    "DEBUG",
    "DEFAULT_FROM_EMAIL",
    "EMAIL_URL",
    "LOG_LEVEL",
    "PORTAL_ADMIN_PASSWORD",
    "PORTAL_APPROVAL_WEBHOOK_URL",
    "PORTAL_BASE_URL",
    "PORTAL_CONFIG_DIR",
    "PORTAL_METRICS_TOKEN",
    "PORTAL_PRODUCTION",
    "PORTAL_PROJECT",
    "PORTAL_SERVE_STATIC",
    "PORTAL_SYSTEM_USER",
    "REDIS_URL",
    "SECRET_KEY",
    "SECURE_HSTS_SECONDS",
    "SECURE_SSL_REDIRECT",
    "STATIC_ROOT",
    "TIME_ZONE",
)
# A .env file next to manage.py is optional; real deployments use the
# process environment.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

PRODUCTION = env.bool("PORTAL_PRODUCTION", default=False)

if PRODUCTION:
    try:
        SECRET_KEY = env.str("SECRET_KEY")
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set in the environment when PORTAL_PRODUCTION is true."
        ) from exc
    DEBUG = env.bool("DEBUG", default=False)
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
else:
    # Development key: never used when PORTAL_PRODUCTION is set.
    SECRET_KEY = env.str(
        "SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production"
    )
    # Off unless asked for: Django's debug pages list every URL and setting
    # to whoever reaches the portal, and hide the site's own error pages.
    DEBUG = env.bool("DEBUG", default=False)
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_rq",
    "portal",
    "stacks",
    "backups",
    "retention",
    "gpu",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.navigation.context",
            ],
        },
    },
]

WSGI_APPLICATION = None
ASGI_APPLICATION = "portal.asgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
}
# Workers and the web process share one SQLite file. They wait up to 30 s
# for its lock instead of failing with "database is locked". WAL lets
# readers (pages, consumers, pollers) run while a writer commits, and with
# synchronous=NORMAL a commit no longer waits for an fsync (a power cut may
# lose the last commits, never consistency; an application crash loses
# nothing). IMMEDIATE transactions take the write lock at BEGIN, so a
# transaction that reads before it writes waits for the busy timeout
# instead of failing at once on a snapshot another writer made stale.
SQLITE_OPTIONS = {
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    "transaction_mode": "IMMEDIATE",
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(SQLITE_OPTIONS)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")

# Serve static files from the ASGI app itself; behind nginx, turn it off and
# let nginx serve STATIC_ROOT (manage.py collectstatic).
PORTAL_SERVE_STATIC = env.bool("PORTAL_SERVE_STATIC", default=not PRODUCTION)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # channels_redis blocks on Redis for 5 s at a time; redis-py's
            # default 5 s read timeout would race it and kill consumers.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
            "prefix": env.str("CHANNELS_PREFIX", default="portal"),
            "capacity": 5000,
            "expiry": 30,
        },
    }
}

# Queues: "default" for short operations (start/stop), "long" for backups and
# restore drills so a backup never delays a restart. Per-host queues are added
# at runtime by portal.queues.queue_for().
RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600},
    "long": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 6 * 3600},
}
RQ = {"WORKER_CLASS": "portal.worker.PortalWorker"}

# Where configs/*.yaml live.
PORTAL_CONFIG_DIR = env.path("PORTAL_CONFIG_DIR", default=BASE_DIR / "configs")
# Compose project prefix: <project>-<env>-<stack>.
PORTAL_PROJECT = env.str("PORTAL_PROJECT", default="multimodal")
# Bearer token of /metrics (Prometheus); empty: signed-in users only.
PORTAL_METRICS_TOKEN = env.str("PORTAL_METRICS_TOKEN", default="")

# Mail of notifications (backup alerts, approvals). EMAIL_URL, e.g.
# smtp+tls://user:password@mail.example.org:587; without it, production
# sends through the local MTA and other setups write each mail as a file in
# .state/mail/.
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
elif PRODUCTION:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = BASE_DIR / ".state" / "mail"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="stack-portal@localhost")
# The portal's address as people reach it: links in notifications.
PORTAL_BASE_URL = env.str("PORTAL_BASE_URL", default="http://127.0.0.1:8000")
# A webhook that receives approval requests and decisions (besides mail).
PORTAL_APPROVAL_WEBHOOK_URL = env.str("PORTAL_APPROVAL_WEBHOOK_URL", default="")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
