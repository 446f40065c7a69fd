"""Sign-in, sign-out, first-run setup and CSRF, through Flask's test client."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app.auth.accounts import create_owner
from tests.dashboard import OWNER_EMAIL, OWNER_PASSWORD, csrf_token


def test_it_offers_only_the_owner_setup_on_a_fresh_install(client: FlaskClient) -> None:
    for path in ("/", "/login", "/webhooks", "/api-keys"):
        r = client.get(path)
        assert r.status_code == 302, path
        assert r.headers["Location"].endswith("/setup"), path
    page = client.get("/setup").get_data(as_text=True)
    assert "Create the owner account" in page
    assert 'name="email"' in page
    assert 'name="password"' in page
    assert 'name="csrf_token"' in page


def test_it_creates_the_owner_signs_in_and_then_the_setup_page_is_gone(
    client: FlaskClient,
) -> None:
    token = csrf_token(client, "/setup")
    r = client.post(
        "/setup", data={"email": "Ada@Example.com", "password": "long enough", "csrf_token": token}
    )
    assert r.status_code == 302
    assert r.headers["Location"].endswith("/webhooks")
    assert client.get("/webhooks").status_code == 200
    assert client.get("/setup").status_code == 404
    assert client.post(
        "/setup", data={"email": "eve@example.com", "password": "x" * 10}
    ).status_code in (400, 404)


def test_it_shows_setup_errors_beside_the_fields(client: FlaskClient) -> None:
    token = csrf_token(client, "/setup")
    r = client.post("/setup", data={"email": "nobody", "password": "short", "csrf_token": token})
    page = r.get_data(as_text=True)
    assert r.status_code == 200
    assert 'id="setup-email-error"' in page
    assert "Enter an email address" in page
    assert 'id="setup-password-error"' in page
    assert "at least 8 characters" in page


def test_it_signs_in_with_remember_me_and_signs_out(app: Flask, client: FlaskClient) -> None:
    create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    token = csrf_token(client)
    r = client.post(
        "/login",
        data={
            "email": OWNER_EMAIL,
            "password": OWNER_PASSWORD,
            "remember": "1",
            "csrf_token": token,
        },
    )
    assert r.status_code == 302
    assert r.headers["Location"] == "/webhooks"
    assert client.get_cookie("remember_token") is not None
    page = client.get("/webhooks").get_data(as_text=True)
    assert OWNER_EMAIL in page

    token = csrf_token(client, "/webhooks")
    r = client.post("/logout", data={"csrf_token": token})
    assert r.status_code == 302
    assert r.headers["Location"].endswith("/login")
    assert client.get_cookie("remember_token") is None
    assert client.get("/webhooks").status_code == 302


def test_it_refuses_a_wrong_password(app: Flask, client: FlaskClient) -> None:
    create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    token = csrf_token(client)
    r = client.post(
        "/login", data={"email": OWNER_EMAIL, "password": "wrong one", "csrf_token": token}
    )
    assert r.status_code == 401
    assert "do not match" in r.get_data(as_text=True)
    assert client.get("/webhooks").status_code == 302


def test_it_sends_anonymous_visitors_to_sign_in_and_back(app: Flask, client: FlaskClient) -> None:
    create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    r = client.get("/event-types")
    assert r.status_code == 302
    assert "/login?next=/event-types" in r.headers["Location"]
    token = csrf_token(client)
    r = client.post(
        "/login?next=/event-types",
        data={"email": OWNER_EMAIL, "password": OWNER_PASSWORD, "csrf_token": token},
    )
    assert r.headers["Location"] == "/event-types"


def test_it_never_redirects_off_site_after_sign_in(app: Flask, client: FlaskClient) -> None:
    create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    token = csrf_token(client)
    r = client.post(
        "/login?next=//evil.example/x",
        data={"email": OWNER_EMAIL, "password": OWNER_PASSWORD, "csrf_token": token},
    )
    assert r.headers["Location"] == "/webhooks"


def test_it_answers_an_htmx_request_of_a_signed_out_admin_with_a_redirect_header(
    app: Flask, client: FlaskClient
) -> None:
    create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    r = client.get("/webhooks", headers={"HX-Request": "true"})
    assert r.status_code == 401
    assert r.headers["HX-Redirect"].startswith("/login")


def test_it_refuses_a_form_without_its_csrf_token(app: Flask, client: FlaskClient) -> None:
    create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    r = client.post("/login", data={"email": OWNER_EMAIL, "password": OWNER_PASSWORD})
    assert r.status_code == 400
    assert "security token" in r.get_data(as_text=True)
    assert client.get("/webhooks").status_code == 302  # not signed in


def test_it_throttles_repeated_wrong_passwords(app: Flask, client: FlaskClient) -> None:
    create_owner(OWNER_EMAIL, OWNER_PASSWORD)
    token = csrf_token(client)
    for _ in range(10):
        client.post(
            "/login", data={"email": OWNER_EMAIL, "password": "nope nope", "csrf_token": token}
        )
    r = client.post(
        "/login", data={"email": OWNER_EMAIL, "password": OWNER_PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 429
    assert client.get("/webhooks").status_code == 302


def test_it_creates_users_from_the_command_line(app: Flask, runner: object) -> None:
    result = runner.invoke(args=["users", "create", "cli@example.com", "--password", "long enough"])  # type: ignore[attr-defined]
    assert result.exit_code == 0, result.output
    client = app.test_client()
    assert client.get("/setup").status_code == 404
    token = csrf_token(client)
    r = client.post(
        "/login", data={"email": "cli@example.com", "password": "long enough", "csrf_token": token}
    )
    assert r.status_code == 302
