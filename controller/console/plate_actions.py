"""Decisions about a campaign's measurements from the console (operators only; session, role
and CSRF checked by ``action_user``): accept, exclude or re-run a plate held after failing QC,
and plan from another analysis version (what ``cellpilot analysis use`` does)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from controller.console import auth
from controller.console.app import action_user
from controller.loop.qc_gate import DECISIONS, PlateDecisionError, decide_plate
from controller.loop.reanalysis import ReanalysisError, adopt

router = APIRouter()


@router.post("/campaigns/{name}/plates/{plate}/{decision}")
async def plate_decision(request: Request, name: str, plate: str, decision: str) -> Response:
    user, form = await action_user(request)
    if decision not in DECISIONS:
        raise HTTPException(404, f"no plate decision {decision!r}")
    reason = str(form.get("reason") or "") or None
    try:
        result = await run_in_threadpool(
            decide_plate, request.app.state.db, plate, decision, user.name, reason
        )
        message = f"plate {plate}: {decision} ({result['experiments']} experiments)"
    except PlateDecisionError as e:
        message = f"error: {e}"
    auth.set_flash(request.app.state.db, user.session_id, message)
    return RedirectResponse(f"/campaigns/{name}#plates", status_code=303)


@router.post("/campaigns/{name}/analysis/{version}/adopt")
async def adopt_analysis(request: Request, name: str, version: int) -> Response:
    user, form = await action_user(request)
    reason = str(form.get("reason") or "") or None
    try:
        out = await run_in_threadpool(
            adopt, request.app.state.db, name, version, user.name, reason=reason
        )
        held = (
            f"; plate(s) held for a QC decision: {out['held_plates']}" if out["held_plates"] else ""
        )
        message = (
            f"now planning from analysis version {version} (was {out['previous']}); "
            f"{out['outcomes_changed']} experiment(s) with other outcomes{held}"
        )
    except ReanalysisError as e:
        message = f"error: {e}"
    auth.set_flash(request.app.state.db, user.session_id, message)
    return RedirectResponse(f"/campaigns/{name}", status_code=303)
