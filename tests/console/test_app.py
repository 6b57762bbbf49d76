"""The console over HTTP (TestClient): login, sessions, roles, CSRF, 401/403, and that every
action goes through controller.loop.operator with the logged-in user as actor."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from controller.console.app import SESSION_COOKIE, create_app
from controller.ledger.accounts import WebSession
from controller.ledger.models import Approval, Campaign, Event, Proposal, RawData, Round
from controller.loop.engine import Frame, sha256_file, write_well_images
from tests.console.conftest import PASSWORDS, csrf_of, login


@pytest.fixture
def app(seeded, ledger_url):
    a = create_app(ledger_url)
    a.state.stream_max_s = 0.6
    return a


def client_as(app, name: str | None) -> TestClient:
    c = TestClient(app)
    if name:
        r = login(c, name)
        assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return c


def _ids(db) -> list[int]:
    with Session(db) as s:
        return [p.id for p in s.exec(select(Proposal).order_by(Proposal.id))]


@pytest.mark.parametrize("path", ["/", "/campaigns/small", "/admin/users"])
def test_pages_redirect_to_login_without_a_session(app, path):
    r = client_as(app, None).get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(
    "path",
    [
        "/api/campaigns",
        "/api/campaigns/small/proposals",
        "/campaigns/small/fragment/events",
        "/campaigns/small/convergence.png",
        "/images/1.png",
        "/campaigns/small/stream",
    ],
)
def test_api_fragments_and_images_answer_401_without_a_session(app, path):
    assert client_as(app, None).get(path).status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/campaigns/small/approve",
        "/proposals/1/approve",
        "/proposals/1/edit",
        "/proposals/1/reject",
        "/campaigns/small/control/pause",
        "/admin/users",
        "/logout",
    ],
)
def test_actions_answer_401_without_a_session(app, seeded, path):
    assert client_as(app, None).post(path, data={"all": "1", "reason": "x"}).status_code == 401
    with Session(seeded) as s:
        assert not s.exec(select(Approval)).all()


def test_login_sets_a_strict_cookie_and_wrong_passwords_are_refused(app):
    c = TestClient(app)
    bad = login(c, "ana", "wrong-password")
    assert bad.status_code == 303 and "error=1" in bad.headers["location"]
    assert "Wrong user name or password" in c.get(bad.headers["location"]).text
    assert login(c, "nobody", "whatever-pw").status_code == 303 and SESSION_COOKIE not in c.cookies
    ok = login(c, "ana")
    cookie = ok.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert c.get("/api/campaigns").json()[0]["name"] == "small"


def test_login_without_the_forms_csrf_token_is_refused(app):
    c = TestClient(app)
    r = c.post("/login", data={"username": "ana", "password": PASSWORDS["ana"]})
    assert r.status_code == 403 and SESSION_COOKIE not in c.cookies


def test_session_ids_are_stored_hashed_and_logout_ends_them(app, seeded):
    c = client_as(app, "ana")
    token = c.cookies[SESSION_COOKIE]
    with Session(seeded) as s:
        rows = s.exec(select(WebSession)).all()
        assert len(rows) == 1 and rows[0].id != token and len(rows[0].id) == 64
    assert (
        c.post("/logout", data={"csrf_token": csrf_of(c)}, follow_redirects=False).status_code
        == 303
    )
    stale = TestClient(app, cookies={SESSION_COOKIE: token})
    assert stale.get("/api/campaigns").status_code == 401
    with Session(seeded) as s:
        assert not s.exec(select(WebSession)).all()


def test_operator_sees_predictions_escalations_and_controls(app):
    page = client_as(app, "ana").get("/campaigns/small").text
    assert "0.300 ± 0.050" in page and "escalated: drug_a_um=5 is outside the signed bounds" in page
    assert 'data-testid="approve-1"' in page and "Approve all 2 inside the policy" in page
    assert 'data-testid="controls"' in page
    assert "alert_sent" in page and "round 1 is waiting" in page


def test_viewer_sees_but_cannot_decide(app, seeded):
    c = client_as(app, "vic")
    page = c.get("/campaigns/small").text
    assert "0.300 ± 0.050" in page
    assert (
        "approve-1" not in page and 'data-testid="controls"' not in page and "viewer-note" in page
    )
    token = csrf_of(c)
    for path, data in [
        ("/proposals/1/approve", {}),
        ("/campaigns/small/approve", {"all": "1"}),
        ("/proposals/1/edit", {"p:drug_a_um": "0.5"}),
        ("/proposals/1/reject", {"reason": "no"}),
        ("/campaigns/small/control/pause", {}),
        ("/admin/users", {"name": "x", "password": "12345678"}),
    ]:
        r = c.post(path, data={"csrf_token": token, **data})
        assert r.status_code == 403, path
    with Session(seeded) as s:
        assert not s.exec(select(Approval)).all()
        assert s.exec(select(Campaign)).one().control_request is None


def test_actions_without_the_sessions_csrf_token_are_refused(app, seeded):
    ana, root = client_as(app, "ana"), client_as(app, "root")
    other = csrf_of(root)  # a valid token, but of another session
    for data in [{}, {"csrf_token": "forged"}, {"csrf_token": other}]:
        r = ana.post("/campaigns/small/approve", data={"all": "1", **data})
        assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    with Session(seeded) as s:
        assert not s.exec(select(Approval)).all()
    ok = ana.post(
        "/campaigns/small/approve", data={"all": "1"}, headers={"X-CSRF-Token": csrf_of(ana)}
    )
    assert ok.status_code == 200  # header form of the token (for scripts), redirected to the page


def test_approve_edit_and_reject_record_the_logged_in_user(app, seeded):
    c = client_as(app, "ana")
    token = csrf_of(c)
    a, b, e = _ids(seeded)
    r = c.post(f"/proposals/{e}/edit", data={"csrf_token": token, "p:drug_a_um": "50"})
    assert (
        r.status_code == 200
        and 'data-testid="edit-error"' in r.text
        and "outside [0.01, 10.0]" in r.text
    )
    r = c.post(
        f"/proposals/{e}/edit",
        data={"csrf_token": token, "p:drug_a_um": "2.5", "reason": "inside policy"},
    )
    assert r.status_code == 200 and f"proposal {e} edited and approved" in r.text
    r = c.post(f"/proposals/{b}/reject", data={"csrf_token": token, "reason": "  "})
    assert "a rejection needs a reason" in r.text
    c.post(f"/proposals/{b}/reject", data={"csrf_token": token, "reason": "precipitates"})
    r = c.post(f"/proposals/{a}/approve", data={"csrf_token": token})
    assert f"approved proposal {a}" in r.text and "Nothing waits for a decision" in r.text
    assert (
        f"proposal {a} was already approved by ana at"
        in c.post(f"/proposals/{a}/approve", data={"csrf_token": token}).text
    )
    with Session(seeded) as s:
        decisions = {
            x.proposal_id: (x.decision, x.actor, x.reason) for x in s.exec(select(Approval))
        }
        assert decisions == {
            a: ("approved", "ana", None),
            b: ("rejected", "ana", "precipitates"),
            e: ("edited", "ana", "inside policy"),
        }
        edited = s.exec(select(Approval).where(Approval.proposal_id == e)).one()
        assert edited.params["drug_a_um"] == 2.5 and s.get(Proposal, e).params["drug_a_um"] == 5.0
        actors = {ev.kind: ev.actor for ev in s.exec(select(Event))}
        assert (
            actors["proposal_edited"]
            == actors["proposal_rejected"]
            == actors["proposal_approved"]
            == "ana"
        )


def test_approve_selected_and_all(app, seeded):
    c = client_as(app, "ana")
    token = csrf_of(c)
    a, b, e = _ids(seeded)
    assert (
        "tick the proposals" in c.post("/campaigns/small/approve", data={"csrf_token": token}).text
    )
    assert (
        f"approved 2 proposal(s): {a}, {b}"
        in c.post("/campaigns/small/approve", data={"csrf_token": token, "ids": [a, b]}).text
    )
    r = c.post("/campaigns/small/approve", data={"csrf_token": token, "all": "1", "shown": [e]})
    assert (
        f"proposal {e} is outside the signed policy" in r.text
    )  # escalated: only by its own button


def test_pause_resume_and_abort_requests(app, seeded):
    c = client_as(app, "ana")
    token = csrf_of(c)
    assert (
        "pause requested"
        in c.post("/campaigns/small/control/pause", data={"csrf_token": token}).text
    )
    with Session(seeded) as s:
        camp = s.exec(select(Campaign)).one()
        assert (camp.control_request, camp.control_actor) == ("pause", "ana")
    assert "Resume" in c.get("/campaigns/small").text
    c.post("/campaigns/small/control/resume", data={"csrf_token": token})
    assert (
        "confirm the abort"
        in c.post("/campaigns/small/control/abort", data={"csrf_token": token}).text
    )
    c.post("/campaigns/small/control/abort", data={"csrf_token": token, "confirm": "yes"})
    with Session(seeded) as s:
        assert s.exec(select(Campaign)).one().control_request == "abort"
        kinds = [(ev.kind, ev.actor) for ev in s.exec(select(Event))]
        assert ("pause_requested", "ana") in kinds and ("campaign_resumed", "ana") in kinds
        assert ("abort_requested", "ana") in kinds


def test_admin_manages_accounts_and_operators_cannot(app):
    assert client_as(app, "ana").get("/admin/users").status_code == 403
    root = client_as(app, "root")
    page = root.get("/admin/users")
    assert page.status_code == 200 and "vic" in page.text
    r = root.post(
        "/admin/users",
        data={
            "csrf_token": csrf_of(root, "/admin/users"),
            "name": "nia",
            "password": "nia-password",
            "role": "operator",
        },
    )
    assert "user nia added as operator" in r.text
    assert login(TestClient(app), "nia", "nia-password").headers["location"] == "/"


def test_fragments_stream_plot_and_thumbnails(app, seeded, tmp_path):
    c = client_as(app, "vic")
    for section in ("status", "proposals", "images", "health", "events"):
        assert c.get(f"/campaigns/small/fragment/{section}").status_code == 200
    assert c.get("/campaigns/small/fragment/nope").status_code == 404
    assert c.get("/campaigns/small/convergence.png").content[:8] == b"\x89PNG\r\n\x1a\n"
    body = c.get("/campaigns/small/stream").text
    assert body.startswith("retry:") and "event: change" in body
    rng = np.random.default_rng(0)
    frames = [
        Frame(
            image=rng.integers(0, 4000, (2, 64, 64)).astype(np.uint16),
            channels=("DAPI", "GFP"),
            plate="small-P001",
            well="B02",
            field=f,
            pixel_size_um=0.65,
            position_um=(0.0, 0.0),
            timestamp_s=0.0,
        )
        for f in range(2)
    ]
    path = tmp_path / "B02.ome.tif"
    meta = write_well_images(path, frames)
    with Session(seeded) as s:
        rnd = s.exec(select(Round)).one()
        raw = RawData(
            round_id=rnd.id,
            plate_id="small-P001",
            well="B02",
            path=str(path),
            sha256=sha256_file(path),
            size_bytes=path.stat().st_size,
            meta=meta,
        )
        s.add(raw)
        s.commit()
        raw_id = raw.id
    assert f"/images/{raw_id}.png" in c.get("/campaigns/small/fragment/images").text
    png = c.get(f"/images/{raw_id}.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert c.get("/images/999.png").status_code == 404


def test_users_cli(ledger_url):
    from typer.testing import CliRunner

    from controller.cli import app as cli

    run = CliRunner()
    r = run.invoke(
        cli,
        ["users", "add", "kim", "--role", "operator", "--password-stdin", "--ledger", ledger_url],
        input="kim-password\n",
    )
    assert r.exit_code == 0, r.output
    again = run.invoke(
        cli,
        ["users", "add", "kim", "--password-stdin", "--ledger", ledger_url],
        input="kim-password\n",
    )
    assert again.exit_code == 2 and "exists" in again.output
    short = run.invoke(
        cli, ["users", "add", "lee", "--password-stdin", "--ledger", ledger_url], input="short\n"
    )
    assert short.exit_code == 2 and "at least 8" in short.output
    bad = run.invoke(
        cli,
        ["users", "add", "lee", "--role", "boss", "--password-stdin", "--ledger", ledger_url],
        input="lee-password\n",
    )
    assert bad.exit_code == 2 and "unknown role" in bad.output
    r = run.invoke(cli, ["users", "list", "--json", "--ledger", ledger_url])
    assert '"name": "kim"' in r.output and '"role": "operator"' in r.output
    assert (
        run.invoke(cli, ["users", "role", "kim", "viewer", "--ledger", ledger_url]).exit_code == 0
    )
    assert run.invoke(cli, ["users", "remove", "kim", "--ledger", ledger_url]).exit_code == 0


def test_edit_form_sends_back_only_changed_fields(app, seeded):
    c = client_as(app, "ana")
    a = _ids(seeded)[0]
    page = c.get("/campaigns/small").text
    assert 'name="orig:drug_b_um" value="0.123457"' in page  # shown rounded
    r = c.post(
        f"/proposals/{a}/edit",
        data={
            "csrf_token": csrf_of(c),
            "p:drug_a_um": "0.2",
            "orig:drug_a_um": "0.1",
            "p:drug_b_um": "0.123457",
            "orig:drug_b_um": "0.123457",
        },
    )
    assert r.status_code == 200
    with Session(seeded) as s:
        edited = s.exec(select(Approval).where(Approval.proposal_id == a)).one().params
    assert edited == {
        "drug_a_um": 0.2,
        "drug_b_um": 0.123456789,
    }  # the untouched value is not rounded


def test_a_live_refresh_does_not_swallow_an_actions_message(app, seeded):
    c = client_as(app, "ana")
    r = c.post(
        f"/proposals/{_ids(seeded)[0]}/approve",
        data={"csrf_token": csrf_of(c)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert c.get("/campaigns/small/fragment/proposals").status_code == 200  # the old page's refresh
    assert "approved proposal" in c.get(r.headers["location"]).text
