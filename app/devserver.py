"""`make run`: embedded Redis, a worker and the web app together, for one command to try Herald."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from werkzeug.serving import run_simple

from wsgi import app


def main() -> None:
    parser = argparse.ArgumentParser(description="Run Herald's web app and a worker.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()

    with app.app_context():
        redis_url = app.extensions["herald"].broker.url  # starts the embedded Redis if needed
    env = {**os.environ, "REDIS_URL": os.environ.get("REDIS_URL", redis_url)}
    worker = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], env=env)
    print(f"\n  Herald is running at http://{args.host}:{args.port}/\n", flush=True)
    print(
        "  Create an API key: .venv/bin/flask --app wsgi keys create my-backend\n",
        flush=True,
    )
    try:
        run_simple(args.host, args.port, app, threaded=True, use_reloader=False)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=15)


if __name__ == "__main__":
    main()
