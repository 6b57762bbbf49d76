"""Accounts and logins leave a trace in the ledger-wide chain (who made whom what, who logged in
from where, who failed, who logged out); failed logins are throttled per user and per address;
at most two password hashes run at once."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from controller.console import auth
from controller.console.app import create_app
from controller.ledger.models import Event
from controller.loop.events import verify_chain
from tests.console.conftest import PASSWORDS, csrf_of, login


@pytest.fixture
def app(seeded, ledger_url):
    return create_app(ledger_url)


def _account_log(db) -> list[tuple[str, str, dict]]:
    with Session(db) as s:
        return [
            (e.kind, e.actor, e.payload)
            for e in s.exec(
                select(Event).where(col(Event.campaign_id).is_(None)).order_by(col(Event.seq))
            )
        ]


def test_account_changes_and_logins_are_in_the_log(app, seeded, ledger_url):
    root = TestClient(app)
    assert login(root, "root").status_code == 303
    r = root.post(
        "/admin/users",
        data={
            "csrf_token": csrf_of(root, "/admin/users"),
            "name": "nia",
            "password": "nia-password",
            "role": "admin",
        },
    )
    assert "user nia added as admin" in r.text
    bad = TestClient(app)
    login(bad, "ana", "wrong-password")
    login(bad, "nobody-typed-a-password-here", "whatever-pw")
    ana = TestClient(app)
    login(ana, "ana")
    ana.post("/logout", data={"csrf_token": csrf_of(ana)})
    from typer.testing import CliRunner

    from controller.cli import app as cli

    assert (
        CliRunner()
        .invoke(cli, ["users", "role", "vic", "operator", "--ledger", ledger_url])
        .exit_code
        == 0
    )
    log = _account_log(seeded)
    kinds = [k for k, _, _ in log]
    created = [(a, p) for k, a, p in log if k == "account_created"]
    assert ("root", {"name": "nia", "role": "admin"}) in created  # who made whom an admin
    assert ("login_succeeded", "root") in [(k, a) for k, a, _ in log]
    failed = [p for k, _, p in log if k == "login_failed"]
    assert {
        "name": "ana",
        "known_user": True,
        "address": "testclient",
        "channel": "console",
    } in failed
    assert {
        "name": None,
        "known_user": False,
        "address": "testclient",
        "channel": "console",
    } in failed
    assert "nobody-typed-a-password-here" not in str(log)  # a mistyped name may be a password
    assert ("logout", "ana") in [(k, a) for k, a, _ in log]
    role = [(a, p) for k, a, p in log if k == "account_role_changed"][-1]
    assert role[1] == {"name": "vic", "old": "viewer", "new": "operator"} and role[0]  # the OS user
    assert kinds.index("account_created") < kinds.index("login_succeeded")
    with Session(seeded) as s:
        assert verify_chain(s, None)[0]
    page = root.get("/admin/users").text
    assert 'data-testid="account-log"' in page and "account_role_changed" in page


def test_repeated_failures_lock_the_user_out_before_any_hashing(app, seeded, monkeypatch):
    c = TestClient(app)
    for _ in range(5):
        r = login(c, "ana", "wrong-password")
        assert "error=1" in r.headers["location"]
    locked = login(c, "ana")  # the right password, but locked
    assert "error=locked" in locked.headers["location"]
    assert "Too many failed logins" in c.get(locked.headers["location"]).text
    spy = _Spy(auth._hasher)
    monkeypatch.setattr(auth, "_hasher", spy)
    assert "error=locked" in login(c, "ana").headers["location"] and spy.calls == 0
    log = _account_log(seeded)
    lock = [p for k, _, p in log if k == "login_locked"]
    assert lock and lock[0]["scope"] == "user" and lock[0]["locked_s"] == 30


def test_failures_across_names_lock_the_address(app, seeded):
    from controller.console import throttle

    c = TestClient(app)
    for i in range(throttle.FREE_FAILURES["addr"]):
        login(c, f"guess{i}", "wrong-password")
    r = login(c, "vic")  # an account nobody failed on, from the same address
    assert "error=locked" in r.headers["location"]


def test_a_success_clears_the_count(app, seeded):
    c = TestClient(app)
    for _ in range(4):
        login(c, "ana", "wrong-password")
    assert login(c, "ana").headers["location"] == "/"
    for _ in range(4):
        login(c, "ana", "wrong-password")
    assert login(c, "ana").headers["location"] == "/"


class _Spy:
    """The real argon2 hasher, counting calls and how many run at once (each held 50 ms longer,
    as a hash at the production cost would be)."""

    def __init__(self, real) -> None:
        self.real, self.calls, self.running, self.peak = real, 0, 0, 0
        self.lock = threading.Lock()

    def verify(self, *args):
        with self.lock:
            self.calls += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(0.05)
            return self.real.verify(*args)
        finally:
            with self.lock:
                self.running -= 1

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_at_most_two_password_hashes_run_at_once(seeded, monkeypatch):
    spy = _Spy(auth._hasher)
    monkeypatch.setattr(auth, "_hasher", spy)
    threads = [
        threading.Thread(
            target=auth.authenticate,
            args=(seeded, f"user{i}", f"wrong-{i}"),
            kwargs={"address": f"10.0.0.{i}"},
        )
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert spy.calls == 8 and spy.peak == 2


def test_cli_account_changes_are_audited_with_the_os_user(ledger_url):
    import getpass

    from typer.testing import CliRunner

    from controller.cli import app as cli
    from controller.ledger.db import open_ledger_engine

    run = CliRunner()
    assert (
        run.invoke(
            cli,
            [
                "users",
                "add",
                "kim",
                "--role",
                "operator",
                "--password-stdin",
                "--ledger",
                ledger_url,
            ],
            input="kim-password\n",
        ).exit_code
        == 0
    )
    run.invoke(
        cli,
        ["users", "passwd", "kim", "--password-stdin", "--ledger", ledger_url],
        input="kim-password-2\n",
    )
    run.invoke(cli, ["users", "remove", "kim", "--ledger", ledger_url])
    log = _account_log(open_ledger_engine(ledger_url))
    me = getpass.getuser()
    assert [(k, a) for k, a, _ in log if k.startswith("account_")] == [
        ("account_created", me),
        ("account_password_changed", me),
        ("account_removed", me),
    ]
    assert PASSWORDS["ana"] not in str(log) and "kim-password" not in str(log)
