"""The shipped deployment files are valid for the tools that read them (TLS included)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.certs import self_signed

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed")
def test_it_ships_an_nginx_site_that_nginx_accepts_with_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "herald.example.com")
    locations = (DEPLOY / "nginx" / "herald-locations.conf").read_text()
    (tmp_path / "locations.conf").write_text(locations.replace("/srv/herald", str(ROOT)))
    site = (
        (DEPLOY / "nginx" / "herald.conf")
        .read_text()
        .replace("/etc/ssl/herald/fullchain.pem", str(cert))
        .replace("/etc/ssl/herald/privkey.pem", str(key))
        .replace("/etc/nginx/snippets/herald-locations.conf", str(tmp_path / "locations.conf"))
    )
    (tmp_path / "site.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n include /etc/nginx/mime.types;\n include {tmp_path}/site.conf;\n}}\n"
    )
    done = subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "e.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "[warn]" not in done.stderr, done.stderr


def test_it_ships_the_streaming_rules_nginx_needs() -> None:
    locations = (DEPLOY / "nginx" / "herald-locations.conf").read_text()
    stream = locations.split("location ~ ^/webhooks/[^/]+/stream$ {", 1)[1].split("}", 1)[0]
    assert "proxy_buffering off;" in stream
    assert "gzip off;" in stream
    assert "proxy_read_timeout 1h;" in stream
    assert "client_max_body_size 2m;" in locations
    assert "X-Forwarded-Proto $scheme" in locations


def test_it_ships_a_gunicorn_configuration_for_streams(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "gunicorn"),
            "-c",
            "deploy/gunicorn.conf.py",
            "--print-config",
            "wsgi:app",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            # --print-config loads the app: a production one, so the JSON log set-up runs too.
            "HERALD_ENV": "production",
            "SECRET_KEY": "deploy-check-secret-key-0123456789",
            "HERALD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'herald.db'}",
            "REDIS_URL": "redis://127.0.0.1:1/0",
        },
    )
    assert done.returncode == 0, done.stderr
    settings = dict(
        (part.strip() for part in line.split("=", 1))
        for line in done.stdout.splitlines()
        if "=" in line
    )
    assert settings["worker_class"] == "gthread"
    assert int(settings["threads"]) >= 8
    assert settings["bind"] == "['127.0.0.1:8000']"
    assert settings["preload_app"] == "False"  # so a reload (HUP) loads new code


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_it_ships_systemd_units_that_systemd_accepts(tmp_path: Path) -> None:
    for unit in (DEPLOY / "systemd").iterdir():
        # Point the units at this checkout so their commands exist; nothing else changes.
        (tmp_path / unit.name).write_text(unit.read_text().replace("/srv/herald", str(ROOT)))
    done = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "herald-web.service",
            "herald-worker@1.service",
            "herald-workers.target",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if str(tmp_path) in line or "herald" in line
    ]
    assert done.returncode == 0, done.stderr
    assert problems == []


def test_it_ships_a_procfile_with_the_same_commands() -> None:
    procfile = dict(
        (part.strip() for part in line.split(":", 1))
        for line in (ROOT / "Procfile").read_text().splitlines()
        if line.strip()
    )
    assert procfile["release"] == "flask --app wsgi db upgrade"
    assert procfile["web"].startswith("gunicorn -c deploy/gunicorn.conf.py ")
    assert procfile["worker"] == "flask --app wsgi worker"
