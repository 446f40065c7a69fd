"""Re-encrypting signing secrets under a new HERALD_ENCRYPTION_KEYS key."""

from __future__ import annotations

from cryptography.fernet import Fernet
from sqlalchemy import select

from app.deliveries.jobs import drain
from app.extensions import db
from app.models import Endpoint
from tests.conftest import Api, make_app
from tests.receiver import Receiver
from tests.verify import verify_both


def test_it_reencrypts_every_secret_under_the_newest_key(env: dict[str, str], api: Api) -> None:
    api.event_type("user.created")
    hook = api.webhook("https://example.com/a")
    api.post(f"/v1/webhooks/{hook['id']}/secret/rotate")
    current = api.get(f"/v1/webhooks/{hook['id']}/secret").get_json()["secret"]
    old_key = env["HERALD_ENCRYPTION_KEYS"]
    new_key = Fernet.generate_key().decode()

    rotated = make_app(env, HERALD_ENCRYPTION_KEYS=f"{new_key},{old_key}")
    with rotated.app_context():
        result = rotated.test_cli_runner().invoke(args=["keys", "reencrypt"])
        assert result.exit_code == 0, result.output
        assert "1 webhooks" in result.output
        row = db.session.execute(select(Endpoint)).scalar_one()
        # Readable with the new key alone: the old key can now be retired.
        assert Fernet(new_key.encode()).decrypt(row.secret_enc.encode()).decode() == current
        assert row.previous_secret_enc is not None
        Fernet(new_key.encode()).decrypt(row.previous_secret_enc.encode())

    retired = make_app(env, HERALD_ENCRYPTION_KEYS=new_key)
    with retired.app_context(), retired.test_client() as client:
        got = client.get(
            f"/v1/webhooks/{hook['id']}/secret", headers={"Authorization": f"Bearer {api.key}"}
        )
        assert got.get_json() == {"secret": current}


def test_it_delivers_verifiable_signatures_once_the_old_key_is_retired(
    env: dict[str, str], api: Api, receiver: Receiver
) -> None:
    api.event_type("user.created")
    hook = api.webhook(receiver.url_for("/k"))
    new_key = Fernet.generate_key().decode()
    rotated = make_app(env, HERALD_ENCRYPTION_KEYS=f"{new_key},{env['HERALD_ENCRYPTION_KEYS']}")
    with rotated.app_context():
        assert rotated.test_cli_runner().invoke(args=["keys", "reencrypt"]).exit_code == 0

    retired = make_app(env, HERALD_ENCRYPTION_KEYS=new_key)
    with retired.app_context():
        api.publish("user.created", {"after": "rotation"})
        assert drain(budget=3, idle=0.2) == 1
    [got] = receiver.wait_for(1)
    assert verify_both(hook["secret"], got.body, got.headers)["data"] == {"after": "rotation"}


def test_it_changes_nothing_when_a_secret_cannot_be_decrypted(
    env: dict[str, str], api: Api
) -> None:
    api.webhook("https://example.com/a")
    api.webhook("https://example.com/b")
    before = sorted(db.session.execute(select(Endpoint.secret_enc)).scalars())
    db.session.rollback()
    # The old key was dropped before re-encrypting: nothing can be read.
    wrong = make_app(env, HERALD_ENCRYPTION_KEYS=Fernet.generate_key().decode())
    with wrong.app_context():
        result = wrong.test_cli_runner().invoke(args=["keys", "reencrypt"])
        assert result.exit_code != 0
        assert "cannot be decrypted" in result.output
        assert "Traceback" not in result.output
    assert sorted(db.session.execute(select(Endpoint.secret_enc)).scalars()) == before
