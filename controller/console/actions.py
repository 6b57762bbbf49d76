"""State-changing routes. Each checks session, role and CSRF token (``action_user``) and calls
``controller.loop.operator`` with the logged-in name as actor, so the audit trail says who did it."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from controller.console import auth
from controller.console.app import action_user, render
from controller.console.pages import campaign_context
from controller.ledger.accounts import Role
from controller.ledger.models import Proposal
from controller.loop import operator

router = APIRouter()

PARAM_PREFIX = "p:"


def _back(request: Request, campaign: str, message: str, anchor: str = "proposals") -> Response:
    user = request.state.user
    auth.set_flash(request.app.state.db, user.session_id, message)
    return RedirectResponse(f"/campaigns/{campaign}#{anchor}", status_code=303)


def _campaign_of(request: Request, proposal_id: int) -> str:
    from sqlmodel import Session

    from controller.ledger.models import Campaign

    with Session(request.app.state.db) as s:
        p = s.get(Proposal, proposal_id)
        if p is None:
            raise HTTPException(404, f"no proposal {proposal_id}")
        return s.get(Campaign, p.campaign_id).name


@router.post("/campaigns/{name}/approve")
async def approve_many(request: Request, name: str) -> Response:
    """Approve the ticked proposals (``ids``), or every pending one with ``all=1``."""
    user, form = await action_user(request)
    db = request.app.state.db
    if form.get("all"):
        ids = None
    else:
        try:
            ids = [int(i) for i in form.getlist("ids")]
        except ValueError:
            raise HTTPException(400, "proposal ids are integers") from None
        if not ids:
            return _back(request, name, "error: tick the proposals to approve, or approve all")
    try:
        done = await run_in_threadpool(operator.approve, db, ids, user.name, name)
    except operator.OperatorError as e:
        return _back(request, name, f"error: {e}")
    return _back(request, name, f"approved {len(done)} proposal(s): {', '.join(map(str, done))}")


@router.post("/proposals/{proposal_id}/approve")
async def approve_one(request: Request, proposal_id: int) -> Response:
    user, _form = await action_user(request)
    name = await run_in_threadpool(_campaign_of, request, proposal_id)
    try:
        await run_in_threadpool(operator.approve, request.app.state.db, [proposal_id], user.name)
    except operator.OperatorError as e:
        return _back(request, name, f"error: {e}")
    return _back(request, name, f"approved proposal {proposal_id}")


@router.post("/proposals/{proposal_id}/reject")
async def reject_one(request: Request, proposal_id: int) -> Response:
    user, form = await action_user(request)
    name = await run_in_threadpool(_campaign_of, request, proposal_id)
    reason = str(form.get("reason", "")).strip()
    try:
        await run_in_threadpool(operator.reject, request.app.state.db, proposal_id, reason, user.name)
    except operator.OperatorError as e:
        return _back(request, name, f"error: {e}")
    return _back(request, name, f"rejected proposal {proposal_id}: {reason}")


@router.post("/proposals/{proposal_id}/edit")
async def edit_one(request: Request, proposal_id: int) -> Response:
    """Edit and approve; a refused edit shows the page again with the error next to the form."""
    user, form = await action_user(request)
    name = await run_in_threadpool(_campaign_of, request, proposal_id)
    # Only the fields the operator changed: the form shows values rounded to 6 digits.
    changes = {k[len(PARAM_PREFIX):]: str(v).strip() for k, v in form.items()
               if k.startswith(PARAM_PREFIX) and str(v).strip() != ""
               and str(v).strip() != str(form.get("orig:" + k[len(PARAM_PREFIX):], "")).strip()}
    reason = str(form.get("reason", "")).strip() or None
    try:
        params = await run_in_threadpool(operator.edit, request.app.state.db, proposal_id, changes,
                                         user.name, reason)
    except operator.OperatorError as e:
        ctx = await run_in_threadpool(campaign_context, request, name)
        ctx["edit_errors"] = {proposal_id: str(e)}
        ctx["edit_values"] = {proposal_id: {**changes, "reason": reason or ""}}
        return render(request, "campaign.html", ctx, status_code=422)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return _back(request, name, f"proposal {proposal_id} edited and approved: {shown}")


@router.post("/campaigns/{name}/control/{action}")
async def control(request: Request, name: str, action: str) -> Response:
    """``pause``, ``resume`` or ``abort`` (abort also needs ``confirm=yes``)."""
    user, form = await action_user(request)
    if action not in ("pause", "resume", "abort"):
        raise HTTPException(404, f"no action {action!r}")
    if action == "abort" and form.get("confirm") != "yes":
        return _back(request, name, "error: tick the box to confirm the abort", anchor="top")
    try:
        await run_in_threadpool(operator.request, request.app.state.db, action, user.name, name)
    except operator.OperatorError as e:
        return _back(request, name, f"error: {e}", anchor="top")
    return _back(request, name, f"{action} requested", anchor="top")


@router.get("/admin/users")
def users_page(request: Request) -> Response:
    from controller.console.app import page_user

    user = page_user(request)
    if not user.can(Role.ADMIN):
        raise HTTPException(403, "only an admin manages accounts")
    return render(request, "users.html", {"users": auth.list_users(request.app.state.db)})


@router.post("/admin/users")
async def users_add(request: Request) -> Response:
    user, form = await action_user(request, Role.ADMIN)
    try:
        await run_in_threadpool(auth.add_user, request.app.state.db, str(form.get("name", "")),
                                str(form.get("password", "")), str(form.get("role", "viewer")))
        msg = f"user {form.get('name')} added as {form.get('role')}"
    except auth.AccountError as e:
        msg = f"error: {e}"
    auth.set_flash(request.app.state.db, user.session_id, msg)
    return RedirectResponse("/admin/users", status_code=303)
