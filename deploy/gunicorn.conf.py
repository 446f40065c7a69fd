"""gunicorn settings for Herald behind nginx: ``gunicorn -c deploy/gunicorn.conf.py wsgi:app``.

gthread workers because the dashboard's live log is a Server-Sent Events stream that stays
open for as long as the page does: with sync workers each viewer would hold a whole process.
A gthread worker's main thread keeps answering the arbiter's heartbeat while its threads
stream, so ``timeout`` never kills an open stream; it only catches a wedged process.
Every setting can be overridden from the environment (see the unit and the README).
"""

from __future__ import annotations

import multiprocessing
import os

_env = os.environ.get

# Loopback only: nginx is the one client. A unix socket works too ("unix:/run/herald/web.sock").
bind = [_env("HERALD_BIND", "127.0.0.1:8000")]
workers = int(_env("WEB_CONCURRENCY", str(min(multiprocessing.cpu_count() * 2, 8))))
worker_class = "gthread"
# Each open live-log stream holds one thread for as long as the page is open.
threads = int(_env("HERALD_WEB_THREADS", "32"))
timeout = int(_env("HERALD_WEB_TIMEOUT", "60"))
# On SIGTERM / reload, requests in flight (and open streams) get this long to finish; the
# browser's EventSource reconnects to a fresh worker by itself.
graceful_timeout = int(_env("HERALD_WEB_GRACEFUL_TIMEOUT", "30"))
keepalive = 75  # longer than nginx's upstream keepalive_timeout (60 s), so nginx closes first
# Not preloaded: `systemctl reload herald-web` (SIGHUP) then starts new workers on new code.
preload_app = False
# The workers' heartbeat files: on tmpfs, so a slow disk cannot make a worker look stuck.
_shm = "/dev/shm"  # noqa: S108 (gunicorn creates its own unique files in it)
worker_tmp_dir = _shm if os.path.isdir(_shm) else None
# The app itself trusts X-Forwarded-* only with HERALD_PROXY_FIX (werkzeug's ProxyFix);
# gunicorn's own parsing of them is left to the loopback default.
forwarded_allow_ips = "127.0.0.1,::1"
proc_name = "herald-web"

accesslog = _env("HERALD_ACCESS_LOG", "-")
errorlog = "-"
loglevel = _env("HERALD_LOG_LEVEL", "info").lower()

# One JSON object a line for gunicorn's own lines too, when Herald logs JSON.
_json = _env("HERALD_LOG_FORMAT", "json" if _env("HERALD_ENV") == "production" else "text")
if _json.lower() == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "app.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        # The app adds its own handler to the root logger (app/logs.py); none here.
        "root": {"level": loglevel.upper(), "handlers": []},
        "loggers": {
            "gunicorn.error": {
                "handlers": ["stderr"],
                "level": loglevel.upper(),
                "propagate": False,
            },
            "gunicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }
