"""Take screenshots of the console for the README (docs/screenshots/*.png).

    .venv/bin/python -m tests.console.screenshots [docs/screenshots]

Runs a small dry-run campaign (Bayesian planner, a standing policy that escalates high
drug A doses, a local webhook for alerts), serves the console on it, and drives Debian's
Chromium with Playwright: round 1 (space-filling) is approved in the browser, then the pages
are captured while round 2 (with the model's predictions) waits for a person.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import yaml

from controller.console.auth import add_user
from controller.ledger.db import open_ledger_engine
from controller.loop.operator import OperatorError, approve, pending_proposals
from tests.console.conftest import (
    PASSWORDS,
    ROLES,
    free_port,
    start_campaign,
    start_console,
    stop,
    wait_http,
)
from tests.console.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.controller.conftest import small_campaign_data


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _campaign(tmp: Path, hook_url: str) -> Path:
    data = small_campaign_data(
        name="drug-combo-demo",
        planner={"name": "bayesian", "batch_size": 6, "settings": {"profile": "fast"}},
        budget={"rounds": 5},
        approval={
            "mode": "policy",
            "poll_s": 0.2,
            "timeout_h": 12,
            "policy": {
                "signed_by": "ana",
                "outside": "wait",
                "parameter_bounds": {"drug_a_um": [0.01, 0.3]},
            },
        },
        alerts={"webhook_url": hook_url},
    )
    data["name"] = "drug-combo-demo"
    data["ledger"] = {"url": f"sqlite:///{tmp / 'ledger.db'}", "data_dir": str(tmp / "data")}
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _wait_pending(db, run, predicted: bool, timeout: float = 180.0) -> list[dict]:
    """Wait for proposals that need a person; with ``predicted``, approve rounds of the
    space-filling initial design (no model yet) until the model's predictions show."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if run.poll() is not None:
            raise RuntimeError(
                f"the campaign stopped ({run.returncode}): {run.stderr.read()[-2000:]}"
            )
        try:
            rows = pending_proposals(db, "drug-combo-demo")
        except OperatorError:
            rows = []
        if rows and (not predicted or any(r["predicted_mean"] for r in rows)):
            return rows
        if rows:  # by id: escalated proposals are approved only when named
            approve(db, [r["id"] for r in rows], "ana", "drug-combo-demo")
        time.sleep(0.3)
    raise TimeoutError("no pending proposals")


def _login(browser, base: str, name: str, path: str = "/"):
    page = browser.new_page(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
    page.set_default_timeout(60_000)
    page.goto(base + path)
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def _images_loaded(page) -> None:
    page.wait_for_function(
        "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
    )


def take(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    hook = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    shots: list[Path] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        path = _campaign(tmp, f"http://127.0.0.1:{hook.server_port}/hook")
        url = f"sqlite:///{tmp / 'ledger.db'}"
        db = open_ledger_engine(url)
        for name, role in ROLES.items():
            add_user(db, name, PASSWORDS[name], role)
        port, log = free_port(), tmp / "serve.log"
        run, serve = start_campaign(path), start_console(url, port, log)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(port, serve, log)
            _wait_pending(db, run, predicted=False)
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1360, "height": 760})
                page.goto(f"{base}/campaigns/drug-combo-demo")
                page.fill("input[name=username]", "ana")
                shots.append(out / "login.png")
                page.screenshot(path=shots[-1])
                page.close()

                page = _login(browser, base, "ana", "/campaigns/drug-combo-demo")
                page.wait_for_selector("[data-proposal]")
                if page.locator(
                    "[data-testid=approve-all]"
                ).count():  # round 1: those inside the policy
                    page.click("[data-testid=approve-all]")
                _wait_pending(db, run, predicted=True)
                page.goto(f"{base}/")
                shots.append(out / "campaigns.png")
                page.screenshot(path=shots[-1], clip={"x": 0, "y": 0, "width": 1360, "height": 260})
                page.goto(f"{base}/campaigns/drug-combo-demo")
                page.wait_for_selector("[data-proposal]")
                _images_loaded(page)
                shots.append(out / "campaign.png")
                page.set_viewport_size({"width": 1360, "height": 1500})
                page.screenshot(path=shots[-1])
                first = page.get_attribute("[data-proposal]", "data-proposal")
                page.click(f"[data-testid=edit-{first}]")
                page.fill(f"#p{first} input[name='p:drug_a_um']", "40")
                page.click(f"#p{first} details.edit button")
                page.wait_for_selector("[data-testid=edit-error]")
                shots.append(out / "proposals_edit_error.png")
                page.locator("#proposals").screenshot(path=shots[-1])
                shots.append(out / "event_log.png")
                box = page.locator("#events").bounding_box()
                page.screenshot(
                    path=shots[-1],
                    full_page=True,
                    clip={
                        "x": box["x"],
                        "y": box["y"],
                        "width": box["width"],
                        "height": min(box["height"], 1000),
                    },
                )
                page.close()

                page = _login(browser, base, "ana", "/campaigns/drug-combo-demo")
                page.set_viewport_size({"width": 390, "height": 844})
                page.reload()
                page.wait_for_selector("[data-proposal]")
                page.locator("#proposals").scroll_into_view_if_needed()
                shots.append(out / "phone.png")
                page.screenshot(path=shots[-1])
                page.close()

                page = _login(browser, base, "vic", "/campaigns/drug-combo-demo")
                page.wait_for_selector("[data-proposal]")
                _images_loaded(page)
                shots.append(out / "viewer.png")
                page.screenshot(path=shots[-1])
                browser.close()
        finally:
            stop(run)
            stop(serve)
            hook.shutdown()
    return shots


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    for shot in take(target):
        print(shot)
