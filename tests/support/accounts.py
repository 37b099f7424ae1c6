"""Console accounts for tests: users and API tokens written with HQ's own account functions, and a
Playwright page logged in through the real login form."""

from __future__ import annotations

from typing import Any

from hq import accounts, db

PASSWORD = "correct-horse-battery-staple"  # meets hq.accounts' rules for any test user name


def add_user(db_url: str, username: str, role: str, *, clinic_id: str | None = None,
             password: str | None = PASSWORD, display_name: str | None = None) -> int:
    engine = db.create_engine_for(db_url)
    try:
        db.upgrade_schema(engine)
        with engine.begin() as conn:
            return accounts.create_user(conn, username, role, clinic_id=clinic_id, password=password,
                                        display_name=display_name)
    finally:
        engine.dispose()


def api_token(db_url: str, username: str, name: str = "tests") -> str:
    engine = db.create_engine_for(db_url)
    try:
        with engine.begin() as conn:
            user = accounts.user_by_name(conn, username)
            assert user is not None, f"no user {username}"
            return accounts.create_api_token(conn, user["id"], name)
    finally:
        engine.dispose()


def user_with_token(db_url: str, username: str, role: str, *, clinic_id: str | None = None) -> str:
    """An API token for `username`, creating the user (of `role`) unless the database already has it."""
    engine = db.create_engine_for(db_url)
    try:
        db.upgrade_schema(engine)
        with engine.connect() as conn:
            exists = accounts.user_by_name(conn, username) is not None
    finally:
        engine.dispose()
    if not exists:
        add_user(db_url, username, role, clinic_id=clinic_id)
    return api_token(db_url, username)


def login(page: Any, base_url: str, username: str, password: str = PASSWORD, next_path: str = "/") -> None:
    """Log a Playwright page in through the login form, then land on `next_path`."""
    page.goto(f"{base_url}/login?next={next_path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")
    if "/login" in page.url:
        raise AssertionError(f"login of {username} failed: {page.locator('.error').all_inner_texts()}")
