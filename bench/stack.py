"""An isolated Herald for one benchmark run: temp dir, database, Redis, receiver, web, workers.

Everything it starts is tracked and torn down by ``close()``, which the caller runs in a
``finally`` (also on Ctrl-C and errors): processes get SIGTERM, then SIGKILL to the process
group they were started in; the temp dir, the Postgres schema and the Redis keys go too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_SERVER_URL = "redis://127.0.0.1:6379/0"


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and why."""


def _bin(name: str) -> str:
    path = VENV_BIN / name
    return str(path) if path.exists() else name


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the benchmark itself dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path | None


@dataclass
class Stack:
    postgres: bool = False
    redis_server: bool = False
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="herald-bench-")))
    procs: list[Proc] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    schema: str | None = None
    keep: bool = False  # keep the temp dir and its logs (a failed run sets it)
    redis_prefix: str | None = None
    embedded_redis_url: str | None = None
    web_url: str = ""
    receiver_url: str = ""
    api_key: str = ""
    arrival_log: Any = None  # bench.nginx.ArrivalLog when nginx is the receiver
    receiver_kind: str = ""
    worker_procs: list[Proc] = field(default_factory=list)

    # --- set-up -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Database, Redis and the environment every Herald process of this run shares."""
        env = dict(os.environ)
        token = secrets.token_hex(4)
        if self.postgres:
            self.schema = f"bench_{token}"
            self._postgres_sql(f'CREATE SCHEMA "{self.schema}"')
            database_url = f"{POSTGRES_URL}?options=-csearch_path%3D{self.schema}"
        else:
            database_url = f"sqlite:///{self.tmp / 'herald.db'}"
        if self.redis_server:
            self.redis_prefix = f"bench-{token}"
            redis_url = REDIS_SERVER_URL
            env["HERALD_REDIS_PREFIX"] = self.redis_prefix
            if not _redis_answers(redis_url):
                raise BenchError(f"--redis-server: no Redis answers at {redis_url}")
        else:
            from app.queue import start_embedded_redis

            redis_url = start_embedded_redis(self.tmp / "redis")
            self.embedded_redis_url = redis_url
            env.pop("HERALD_REDIS_PREFIX", None)
        env.update(
            HERALD_ENV="development",
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            HERALD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
            SECRET_KEY=secrets.token_urlsafe(32),
            HERALD_ALLOW_NETWORKS="127.0.0.0/8",
            # The ingest figure is what the app can take, not what the limiter lets through.
            HERALD_API_RATE_LIMIT="1000000 per second",
            PYTHONUNBUFFERED="1",
        )
        self.env = env
        self.flask("db", "upgrade")
        self.api_key = self.flask("keys", "create", "bench").strip().splitlines()[-1].strip()

    def flask(self, *args: str, timeout: float = 120) -> str:
        """Run one ``flask --app wsgi`` command to completion and return its stdout."""
        cmd = [_bin("flask"), "--app", "wsgi", *args]
        try:
            done = subprocess.run(
                cmd,
                cwd=ROOT,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"`flask {' '.join(args)}` took over {timeout:g} s") from None
        if done.returncode != 0:
            raise BenchError(
                f"`flask {' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def start_receiver(self, timeout: float = 15) -> None:
        """Debian's nginx answering 204 (the fast receiver the figures assume).

        Falls back to bench/receiver.py (asyncio, Python) where nginx is not installed.
        """
        from bench.nginx import NGINX, ArrivalLog, write_config

        if not Path(NGINX).exists():
            self.start_python_receiver(timeout)
            return
        port = free_port()
        config = write_config(self.tmp, port)
        proc = self._spawn("receiver", [NGINX, "-c", str(config), "-e", str(self.tmp / "ngx.log")])
        self.receiver_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise BenchError(f"nginx exited at start:\n{self.tail(proc)}")
            with contextlib.suppress(requests.RequestException):
                if requests.post(f"{self.receiver_url}/up", timeout=2).status_code == 204:
                    self.arrival_log = ArrivalLog(self.tmp / "arrivals.log")
                    self.receiver_kind = "nginx (Debian) 204, access log for arrivals"
                    return
            time.sleep(0.1)
        raise BenchError(f"nginx did not answer within {timeout:g} s:\n{self.tail(proc)}")

    def start_python_receiver(self, timeout: float = 15) -> None:
        proc = self._spawn("receiver", [_bin("python"), "-m", "bench.receiver"], log=False)
        assert proc.popen.stdout is not None
        fd = proc.popen.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        line = os.read(fd, 200).decode() if ready else ""
        if not line.startswith("listening "):
            raise BenchError(f"the receiver did not start within {timeout:g} s: {line!r}")
        self.receiver_url = f"http://127.0.0.1:{int(line.split()[1])}"
        self.receiver_kind = "bench/receiver.py (asyncio)"

    def start_web(self, timeout: float = 30) -> None:
        """gunicorn as production would run it; ``flask run`` if gunicorn is unusable."""
        port = free_port()
        self.web_url = f"http://127.0.0.1:{port}"
        gunicorn = [
            _bin("gunicorn"),
            *("-w", "2", "-k", "gthread", "--threads", "4"),
            # As deploy/gunicorn.conf.py: with gunicorn's 2 s, the benchmark's kept-alive
            # connection was closed while it waited for new workers to start, and its next
            # call failed ("Remote end closed connection without response").
            *("--keep-alive", "75"),
            *("-b", f"127.0.0.1:{port}", "wsgi:app"),
        ]
        proc = self._spawn("web", gunicorn)
        if self._wait_healthy(proc, timeout):
            return
        self._stop(proc)
        self.procs.remove(proc)
        proc = self._spawn("web", [_bin("flask"), "--app", "wsgi", "run", "--port", str(port)])
        if not self._wait_healthy(proc, timeout):
            raise BenchError(f"the web app did not answer /healthz within {timeout:g} s")

    def start_workers(
        self, count: int, env: dict[str, str] | None = None, timeout: float = 30
    ) -> list[int]:
        saved = self.env
        if env:
            self.env = {**self.env, **env}
        try:
            procs = [
                self._spawn(f"worker-{i}", [_bin("flask"), "--app", "wsgi", "worker"])
                for i in range(count)
            ]
        finally:
            self.env = saved
        # A load started before the workers listen (a second of imports) measured their
        # start-up: its first ticks waited for a drain and came out 90-260 ms.
        deadline = time.monotonic() + timeout
        for proc in procs:
            while "Listening on" not in self.tail(proc, 100_000):
                if proc.popen.poll() is not None:
                    raise BenchError(f"{proc.name} exited at start:\n{self.tail(proc)}")
                if time.monotonic() > deadline:
                    raise BenchError(f"{proc.name} did not start within {timeout:g} s")
                time.sleep(0.05)
        self.worker_procs = procs
        return [p.popen.pid for p in procs]

    def stop_workers(self) -> None:
        for proc in self.worker_procs:
            self._stop(proc)
            self.procs.remove(proc)
        self.worker_procs = []

    # --- helpers ------------------------------------------------------------------------

    def pid(self, name: str) -> int:
        return next(p.popen.pid for p in self.procs if p.name == name)

    def tail(self, proc: Proc, chars: int = 3000) -> str:
        if proc.log is None or not proc.log.exists():
            return "(no log)"
        return proc.log.read_text(errors="replace")[-chars:]

    def check_alive(self) -> None:
        """Fail fast, with the process's own last words, if anything died mid-run."""
        for proc in self.procs:
            if proc.popen.poll() is not None:
                raise BenchError(
                    f"{proc.name} exited ({proc.popen.returncode}):\n{self.tail(proc)}"
                )

    def _spawn(self, name: str, cmd: list[str], log: bool = True) -> Proc:
        """Start ``cmd`` with its output in a log file (stdout piped instead when not ``log``)."""
        logfile = self.tmp / f"{name}.log"
        out = open(logfile, "wb")  # noqa: SIM115 (closed below; the child keeps its copy)
        try:
            popen = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=self.env or None,
                stdin=subprocess.DEVNULL,
                stdout=out if log else subprocess.PIPE,
                stderr=out,
                start_new_session=True,  # Ctrl-C reaches only us; we stop them in order
                preexec_fn=_die_with_parent,
            )
        finally:
            out.close()
        proc = Proc(name, popen, logfile)
        self.procs.append(proc)
        return proc

    def _wait_healthy(self, proc: Proc, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                return False
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.web_url}/healthz", timeout=2).status_code == 200:
                    return True
            time.sleep(0.2)
        return False

    def _postgres_sql(self, sql: str) -> None:
        import psycopg

        try:
            with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as conn:
                conn.execute(sql.encode())
        except psycopg.OperationalError as exc:
            raise BenchError(f"--postgres: cannot reach {POSTGRES_URL}: {exc}") from None

    # --- tear-down ----------------------------------------------------------------------

    @staticmethod
    def _stop(proc: Proc, grace: float = 10) -> None:
        popen = proc.popen
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(grace)
        # Its own session: this reaches gunicorn's workers too, and nothing of anyone else's.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(5)
        if popen.stdout:
            popen.stdout.close()

    def close(self) -> None:
        steps: list[Callable[[], None]] = [
            *(lambda p=p: self._stop(p) for p in reversed(self.procs)),
            self._close_redis,
            self._drop_schema,
            self._remove_tmp,
        ]
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep tearing down the rest
                print(f"clean-up step failed: {exc}")
        self.procs.clear()

    def _remove_tmp(self) -> None:
        if os.environ.get("HERALD_BENCH_KEEP") or self.keep:
            print(f"kept {self.tmp} (its web.log and worker-*.log say what went wrong)")
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _close_redis(self) -> None:
        if self.embedded_redis_url:
            pidfile = self.tmp / "redis" / "redis.pid"
            pid = int(pidfile.read_text()) if pidfile.exists() else None
            with contextlib.suppress(redis.RedisError, OSError):
                redis.Redis.from_url(self.embedded_redis_url, socket_timeout=5).shutdown(
                    nosave=True
                )
            if pid is not None:
                _wait_gone(pid, 5)
        if self.redis_server and self.redis_prefix:
            client = redis.Redis.from_url(REDIS_SERVER_URL, socket_timeout=5)
            for pattern in (f"{self.redis_prefix}*", f"rq:*{self.redis_prefix}*"):
                keys = list(client.scan_iter(match=pattern, count=1000))
                if keys:
                    client.delete(*keys)

    def _drop_schema(self) -> None:
        if self.schema:
            self._postgres_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
            self.schema = None


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except (redis.RedisError, OSError):
        return False


def _wait_gone(pid: int, timeout: float) -> None:
    """The embedded Redis daemonises, so it is no child of ours: kill it by its pidfile's id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
