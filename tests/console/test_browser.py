"""Browser tests: Playwright's Python package drives Debian's Chromium (headless) against
``cellpilot serve`` while a dry-run campaign in manual approval mode runs in another process.

Needs ``apt-get install -y chromium`` and ``pip install playwright`` (pinned in
requirements/constraints.txt). Never ``playwright install``: the system Chromium is used.
"""

from __future__ import annotations

import os
import shutil
import time
import urllib.request

import pytest
from sqlmodel import Session, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Approval, Event, Step
from controller.spec import load_campaign
from tests.console.conftest import (
    PASSWORDS,
    add_accounts,
    free_port,
    start_campaign,
    start_console,
    stop,
    wait_http,
    write_manual_campaign,
)

CHROMIUM = os.environ.get("CELLPILOT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="browser tests need Playwright's Python package: pip install playwright==1.65.2",
)
if shutil.which(CHROMIUM) is None:
    pytest.skip(
        f"browser tests need Debian's Chromium at {CHROMIUM}: apt-get install -y chromium",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A manual-approval dry-run (2 rounds of 6) and the console serving its ledger."""
    tmp = tmp_path_factory.mktemp("console")
    path = write_manual_campaign(tmp)
    url = load_campaign(path).ledger.url
    db = open_ledger_engine(url)
    add_accounts(db)
    port = free_port()
    log = tmp / "serve.log"
    run = start_campaign(path)
    serve = start_console(url, port, log)
    try:
        wait_http(port, serve, log)
        _wait_for_proposals(db, run)
        yield {"base": f"http://127.0.0.1:{port}", "db": db, "run": run, "url": url}
    finally:
        stop(run)
        stop(serve)


def _wait_for_proposals(db, run, timeout: float = 60.0) -> None:
    from controller.loop.operator import OperatorError, pending_proposals

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if run.poll() is not None:
            raise AssertionError(f"the campaign exited early: {run.stderr.read()}")
        try:
            if pending_proposals(db, "small"):
                return
        except OperatorError:
            pass
        time.sleep(0.2)
    raise AssertionError("no proposals from the dry-run")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _login(browser, base: str, name: str, **page_options):
    page = browser.new_page(**({"viewport": {"width": 1320, "height": 1000}} | page_options))
    page.set_default_timeout(30_000)
    page.goto(f"{base}/campaigns/small")
    assert "/login" in page.url
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/campaigns/small")
    return page


def _pending_ids(page) -> list[int]:
    page.wait_for_selector("[data-proposal]")
    return [
        int(x)
        for x in page.eval_on_selector_all(
            "[data-proposal]", "els => els.map(e => e.dataset.proposal)"
        )
    ]


def test_operator_approves_and_edits_and_the_campaign_moves_on(lab, browser):
    page = _login(browser, lab["base"], "ana")
    ids = _pending_ids(page)
    assert len(ids) == 6 and "Round 1" in page.inner_text("#proposals")
    first = ids[0]
    # an edit outside the search space is refused, with the reason next to the form
    page.click(f"[data-testid=edit-{first}]")
    form = page.locator(f"#p{first} details.edit form")
    form.locator("input[name='p:drug_a_um']").fill("50")
    form.locator("button").click()
    assert "outside [0.01, 10.0]" in page.inner_text("[data-testid=edit-error]")
    form = page.locator(f"#p{first} details.edit form")
    form.locator("input[name='p:drug_a_um']").fill("0.5")
    form.locator("input[name=reason]").fill("known toxic above 1 uM")
    form.locator("button").click()
    assert f"proposal {first} edited and approved" in page.inner_text("[data-testid=flash]")
    # approve two by ticking them, one with its own button, the rest with "approve all"
    for pid in ids[1:3]:
        page.check(f"#p{pid} input[name=ids]")
    page.click("[data-testid=approve-selected]")
    assert "approved 2 proposal(s)" in page.inner_text("[data-testid=flash]")
    page.click(f"[data-testid=approve-{ids[3]}]")
    page.click("[data-testid=approve-all]")
    assert "approved 2 proposal(s)" in page.inner_text("[data-testid=flash]")
    # the runner picks the approvals up: the plate runs, and round 2's proposals appear live
    # (server-sent events refresh the sections; no reload here)
    page.wait_for_function(
        "document.querySelector('[data-testid=steps]') && "
        "parseInt(document.querySelector('[data-testid=steps]').textContent) > 0"
    )
    page.wait_for_function(
        "document.querySelector('#proposals').innerText.includes('Round 2')", timeout=60_000
    )
    assert len(_pending_ids(page)) == 6
    assert page.locator("[data-testid=thumbs] img").count() > 0
    assert "proposal_edited" in page.inner_text("#events")
    with Session(lab["db"]) as s:
        decisions = {a.proposal_id: (a.decision, a.actor) for a in s.exec(select(Approval))}
        assert decisions[first] == ("edited", "ana") and len(decisions) == 6
        assert {actor for _, actor in decisions.values()} == {"ana"}
        assert s.exec(select(Step).where(Step.status == "done")).first() is not None
    page.close()


def test_viewer_cannot_approve(lab, browser):
    page = _login(browser, lab["base"], "vic")
    ids = _pending_ids(page)
    assert page.locator("[data-testid^=approve-]").count() == 0
    assert page.locator("[data-testid=controls]").count() == 0
    assert "viewer" in page.inner_text("[data-testid=viewer-note]")
    # forge the approve request with the viewer's own valid session and CSRF token
    status = page.evaluate(
        """async (id) => {
        const token = document.querySelector('input[name=csrf_token]').value;
        const r = await fetch(`/proposals/${id}/approve`, {method: 'POST',
            body: new URLSearchParams({csrf_token: token})});
        return r.status; }""",
        ids[0],
    )
    assert status == 403
    with Session(lab["db"]) as s:
        assert not s.exec(select(Approval).where(Approval.proposal_id == ids[0])).all()
    page.close()


def test_unauthenticated_requests_are_refused(lab, browser):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"{lab['base']}/campaigns/small")
    assert (
        "/login?next=/campaigns/small" in page.url
        and page.locator("input[name=password]").count() == 1
    )
    assert ctx.request.get(f"{lab['base']}/api/campaigns").status == 401
    assert (
        ctx.request.post(f"{lab['base']}/campaigns/small/approve", form={"all": "1"}).status == 401
    )
    ctx.close()


def _in_view(page, locator, width: int, height: int) -> None:
    box = locator.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
    assert box["y"] >= 0 and box["y"] + box["height"] <= height, box


def test_on_a_phone_the_decision_buttons_are_on_screen_and_the_result_in_view(lab, browser):
    page = _login(
        browser,
        lab["base"],
        "ana",
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        device_scale_factor=2,
    )
    ids = _pending_ids(page)
    page.wait_for_timeout(1500)  # the live refresh right after loading replaces the buttons
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing off to the side
    last = ids[-1]
    button = page.locator(f"[data-testid=approve-{last}]")
    button.scroll_into_view_if_needed()
    _in_view(page, button, 390, 844)
    button.click()
    page.wait_for_selector("[data-testid=flash]")
    assert f"approved proposal {last}" in page.inner_text("[data-testid=flash]")
    _in_view(page, page.locator("[data-testid=flash]"), 390, 844)  # the result is not scrolled away
    page.close()


def test_an_expired_session_leads_to_login_and_back_to_the_page(lab, browser):
    page = _login(browser, lab["base"], "ana")
    ids = _pending_ids(page)
    page.wait_for_timeout(1500)  # the live refresh right after loading is done
    page.context.clear_cookies()  # the session ended (expired, or logged out in another tab)
    page.click(f"[data-testid=approve-{ids[0]}]")
    page.wait_for_url("**/login?expired=1&next=/campaigns/small")
    assert "your last action was not done" in page.inner_text("[data-testid=login-expired]")
    page.fill("input[name=username]", "ana")
    page.fill("input[name=password]", PASSWORDS["ana"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{lab['base']}/campaigns/small")
    with Session(lab["db"]) as s:
        assert not s.exec(select(Approval).where(Approval.proposal_id == ids[0])).all()
    page.close()


def test_an_idle_page_notices_the_ended_session_and_leads_to_login(lab, browser):
    page = _login(browser, lab["base"], "vic")
    _pending_ids(page)
    page.context.clear_cookies()
    page.evaluate(
        "document.dispatchEvent(new Event('cellpilot:refresh'))"
    )  # as a live update would
    page.wait_for_url(lambda url: "/login?expired=2&next=" in url and "campaigns" in url)
    assert "log in to continue" in page.inner_text("[data-testid=login-expired]")
    page.close()


def test_campaign_finishes_once_round_2_is_approved(lab):
    with urllib.request.urlopen(f"{lab['base']}/login") as r:  # still serving
        assert r.status == 200
    from controller.loop.operator import approve

    approve(lab["db"], None, "ana", "small")
    assert lab["run"].wait(timeout=60) == 0, lab["run"].stderr.read()
    with Session(lab["db"]) as s:
        kinds = [e.kind for e in s.exec(select(Event))]
    assert kinds[-1] == "campaign_completed"
