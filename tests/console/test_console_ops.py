"""The console at 2 a.m. (TestClient): framing forbidden, a cookie per console, "approve all"
approves exactly the rows shown and never an escalated one, waiting and failed plates are
visible, every action answers with a redirect, expired sessions and stale forms lead back to
the page instead of a raw error."""

from __future__ import annotations

import re
import urllib.request
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from controller.console.app import create_app
from controller.ledger.models import Approval, Campaign, Proposal, Round, utcnow
from tests.console.conftest import csrf_of, login

HTML = {"Accept": "text/html,application/xhtml+xml"}


@pytest.fixture
def app(seeded, ledger_url):
    return create_app(ledger_url)


def _as(app, name: str) -> TestClient:
    c = TestClient(app)
    assert login(c, name).status_code == 303
    return c


def _ids(db) -> list[int]:
    with Session(db) as s:
        return [p.id for p in s.exec(select(Proposal).order_by(col(Proposal.id)))]


def _status(db, pid: int) -> str:
    with Session(db) as s:
        return s.get(Proposal, pid).status


def test_no_page_can_be_framed(app):
    c = _as(app, "vic")
    for r in (c.get("/campaigns/small"), c.get("/login"), TestClient(app).get("/api/campaigns")):
        assert r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


def test_two_consoles_keep_their_own_session_cookies(seeded, ledger_url):
    a, b = create_app(ledger_url, instance="8001"), create_app(ledger_url, instance="8002")
    ca = _as(a, "ana")
    assert "cellpilot_session_8001" in ca.cookies
    cb = TestClient(b, cookies=ca.cookies)  # one browser, one host: the cookie jar is shared
    assert cb.get("/api/campaigns").status_code == 401
    login(cb, "vic")
    assert {"cellpilot_session_8001", "cellpilot_session_8002"} <= set(cb.cookies)
    assert (
        TestClient(a, cookies=cb.cookies).get("/api/campaigns").status_code == 200
    )  # ana still logged in


def test_approve_all_approves_exactly_the_rows_shown_and_no_escalated_one(app, seeded):
    c = _as(app, "ana")
    a, b, e = _ids(seeded)
    page = c.get("/campaigns/small").text
    shown = [int(i) for i in re.findall(r'name="shown" value="(\d+)"', page)]
    assert shown == [a, b] and "Approve all 2 inside the policy" in page and "1 escalated" in page
    with Session(seeded) as s:  # the planner adds a proposal after the page was drawn
        p = s.get(Proposal, a)
        late = Proposal(
            campaign_id=p.campaign_id,
            round_id=p.round_id,
            position=9,
            planner="bayesian",
            params={"drug_a_um": 0.4, "drug_b_um": 0.4},
        )
        s.add(late)
        s.commit()
        late_id = late.id
    r = c.post(
        "/campaigns/small/approve", data={"csrf_token": csrf_of(c), "all": "1", "shown": shown}
    )
    assert f"approved 2 proposal(s): {a}, {b}" in r.text
    assert _status(seeded, e) == "proposed" and _status(seeded, late_id) == "proposed"


def test_an_escalated_proposal_needs_its_own_confirmation(app, seeded):
    c = _as(app, "ana")
    a, _, e = _ids(seeded)
    page = c.get("/campaigns/small").text
    assert f'data-testid="confirm-{e}"' in page and f'value="{e}" form="approve-many"' not in page
    r = c.post("/campaigns/small/approve", data={"csrf_token": csrf_of(c), "ids": [a, e]})
    assert "outside the signed policy" in r.text and _status(seeded, a) == "proposed"
    r = c.post(f"/proposals/{e}/approve", data={"csrf_token": csrf_of(c)})
    assert "outside the signed policy" in r.text and _status(seeded, e) == "proposed"
    r = c.post(f"/proposals/{e}/approve", data={"csrf_token": csrf_of(c), "outside_policy": "yes"})
    assert f"approved proposal {e}" in r.text and _status(seeded, e) == "approved"


def test_a_row_decided_meanwhile_stops_the_bulk_approval(app, seeded):
    from controller.loop.operator import reject

    c = _as(app, "ana")
    a, b, _ = _ids(seeded)
    token = csrf_of(c)
    reject(seeded, b, "precipitates", "ben")  # another operator, between drawing and clicking
    r = c.post("/campaigns/small/approve", data={"csrf_token": token, "all": "1", "shown": [a, b]})
    assert (
        f"proposal {b} was already rejected by ben at" in r.text
        and "nothing was approved" in r.text
    )
    assert _status(seeded, a) == "proposed"


def _wait_since(db, hours_ago: float, **approval) -> None:
    with Session(db) as s:
        camp = s.exec(select(Campaign)).one()
        camp.spec = {**camp.spec, "approval": {**camp.spec["approval"], **approval}}
        rnd = s.exec(select(Round)).one()
        rnd.awaiting_approval_since = utcnow() - timedelta(hours=hours_ago)
        s.add(camp)
        s.add(rnd)
        s.commit()


def test_the_campaign_list_says_who_waits_since_when_and_what_happens_then(app, seeded):
    _wait_since(seeded, 0.5, timeout_h=2, on_timeout="skip_round")
    with Session(seeded) as s:
        since = s.exec(select(Round)).one().awaiting_approval_since
    hm = since.strftime("%H:%M")
    deadline = (since + timedelta(hours=2)).strftime("%H:%M")
    for page in (_as(app, "vic").get("/").text, _as(app, "vic").get("/campaigns/small").text):
        assert "waiting for approval" in page and f"{hm} UTC" in page and f"{deadline} UTC" in page
        assert "the round is skipped" in page
    assert ">running<" not in _as(app, "vic").get("/").text


def test_predictions_that_break_a_constraint_and_failed_plates_are_flagged(app, seeded):
    with Session(seeded) as s:
        p = s.get(Proposal, _ids(seeded)[0])
        p.predicted_mean = {**p.predicted_mean, "normal_viability": 0.41}
        s.add(p)
        old = Round(
            campaign_id=p.campaign_id,
            index=1,
            plate_id="small-P000",
            status="analyzed",
            plate_ok=False,
            z_prime={"tumour_count": 0.21},
        )
        s.add(old)
        s.commit()
    page = _as(app, "vic").get("/campaigns/small").text
    assert "normal_viability predicted 0.41, needs &gt;= 0.6" in page
    assert "Plate small-P000 (round 2) failed QC" in page and "0.21" in page
    assert "plate small-P000 failed QC" in _as(app, "vic").get("/").text


def test_a_refused_edit_redirects_and_shows_the_error_next_to_the_form(app, seeded):
    c = _as(app, "ana")
    a = _ids(seeded)[0]
    r = c.post(
        f"/proposals/{a}/edit",
        data={"csrf_token": csrf_of(c), "p:drug_a_um": "50", "reason": "try"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/campaigns/small#p{a}"
    page = c.get(r.headers["location"]).text
    assert 'data-testid="edit-error"' in page and "outside [0.01, 10.0]" in page
    assert 'value="50"' in page and 'value="try"' in page and "<details open" in page
    assert 'data-testid="edit-error"' not in c.get("/campaigns/small").text  # shown once
    assert _status(seeded, a) == "proposed"


def test_an_expired_session_sends_a_browser_to_login_and_back(app, seeded):
    c = TestClient(app)
    back = "http://testserver/campaigns/small"
    r = c.post(
        f"/proposals/{_ids(seeded)[0]}/approve",
        data={"csrf_token": "old"},
        headers={**HTML, "Referer": back},
        follow_redirects=False,
    )
    assert (
        r.status_code == 303 and r.headers["location"] == "/login?expired=1&next=/campaigns/small"
    )
    page = c.get(r.headers["location"]).text
    assert "Your session ended, so your last action was not done" in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    done = c.post(
        "/login",
        data={
            "username": "ana",
            "password": "ana-operator-pw",
            "csrf_token": token,
            "next": "/campaigns/small",
        },
        follow_redirects=False,
    )
    assert done.headers["location"] == "/campaigns/small"
    assert not Session(seeded).exec(select(Approval)).all()


def test_a_stale_csrf_token_goes_back_to_the_page_with_the_reason(app, seeded):
    c = _as(app, "ana")
    r = c.post(
        "/campaigns/small/control/pause",
        data={"csrf_token": "from-an-old-tab"},
        headers={**HTML, "Referer": "http://testserver/campaigns/small"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/campaigns/small"
    assert "the page was out of date, so nothing was done" in c.get("/campaigns/small").text
    scripted = c.post(
        "/campaigns/small/control/pause", data={"csrf_token": "x"}
    )  # not a browser: JSON
    assert scripted.status_code == 403 and "CSRF" in scripted.json()["detail"]


def test_a_stale_login_form_is_replaced_not_refused(app):
    c = TestClient(app)
    r = c.post(
        "/login",
        data={"username": "ana", "password": "x", "csrf_token": "old", "next": "/"},
        headers=HTML,
        follow_redirects=False,
    )
    assert r.status_code == 303 and "error=expired" in r.headers["location"]


def test_pause_requested_gives_way_to_paused_once_the_runner_holds(app, seeded):
    c = _as(app, "ana")
    c.post("/campaigns/small/control/pause", data={"csrf_token": csrf_of(c)})
    assert "pause requested by ana" in c.get("/campaigns/small").text
    with Session(seeded) as s:  # what the runner does when it holds at a step boundary
        camp = s.exec(select(Campaign)).one()
        camp.status, camp.pause_reason = "paused", "paused by ana"
        s.add(camp)
        s.commit()
    page = c.get("/campaigns/small").text
    assert "Paused by ana" in page and "pause requested" not in page and "Resume" in page


def test_serve_warns_about_plain_http_off_loopback_and_names_its_cookies(
    tmp_path, seeded, ledger_url
):
    from tests.console.conftest import free_port, start_console, stop, wait_http

    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_console(ledger_url, port, log, host="0.0.0.0")
    try:
        wait_http(port, proc, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login") as r:
            assert f"cellpilot_login_csrf_{port}=" in r.headers["set-cookie"]
            assert r.headers["x-frame-options"] == "DENY"
    finally:
        stop(proc)
    out = log.read_text()
    assert "warning: serving plain HTTP on 0.0.0.0" in out
    quiet, port = tmp_path / "quiet.log", free_port()
    proc = start_console(ledger_url, port, quiet)
    try:
        wait_http(port, proc, quiet)
    finally:
        stop(proc)
    assert "warning" not in quiet.read_text()
