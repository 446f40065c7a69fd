"""Admin accounts: the first-run owner, password checks, and loading the signed-in user."""

from __future__ import annotations

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from app.errors import Conflict, Invalid
from app.extensions import db
from app.models import User

MIN_PASSWORD = 8
# Checked against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a real password, only spends the time")


def has_users() -> bool:
    """Whether any admin exists (the setup page is only for a fresh install)."""
    return db.session.execute(select(func.count()).select_from(User)).scalar_one() > 0


def load_user(user_id: str) -> User | None:
    """Flask-Login's user loader: the user behind a session, if it still exists."""
    if not user_id.isdigit():
        return None
    return db.session.get(User, int(user_id))


def check_new_account(email: str, password: str) -> dict[str, str]:
    """Field problems of a would-be account, empty when it may be created."""
    problems: dict[str, str] = {}
    email = email.strip()
    if "@" not in email or email.startswith("@") or email.endswith("@") or len(email) > 254:
        problems["email"] = "Enter an email address, such as ada@example.com."
    if len(password) < MIN_PASSWORD:
        problems["password"] = f"Use at least {MIN_PASSWORD} characters."
    return problems


def create_owner(email: str, password: str) -> User:
    """The first admin account; Conflict once any account exists."""
    problems = check_new_account(email, password)
    if problems:
        raise Invalid("the account is not valid", problems)
    if has_users():
        raise Conflict("an owner account already exists")
    user = User(email=email.strip().lower(), password_hash=generate_password_hash(password))
    db.session.add(user)
    db.session.commit()
    return user


def authenticate(email: str, password: str) -> User | None:
    """The user with this email and password, or None."""
    user = db.session.execute(
        select(User).where(User.email == email.strip().lower())
    ).scalar_one_or_none()
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    return user if check_password_hash(user.password_hash, password) else None
