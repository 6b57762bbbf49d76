"""The QC gate from the console: accept, exclude or re-run a plate held after failing QC
(operators only; session, role and CSRF checked by ``action_user``)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from controller.console import auth
from controller.console.app import action_user
from controller.loop.qc_gate import DECISIONS, PlateDecisionError, decide_plate

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
