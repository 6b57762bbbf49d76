"""State-changing routes. Each checks session, role and CSRF token (``action_user``) and calls
``controller.loop.operator`` with the logged-in name as actor, so the audit trail says who did it.

Every action answers with a redirect to the page (post/redirect/get: a reload never re-submits),
its result in the one-shot flash message. "Approve all N" approves exactly the N rows the
operator saw (their ids travel with the form), never one that appeared since, and never an
escalated one: a proposal outside the signed policy is approved only by its own button, with
its own confirmation."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from controller.console import auth
from controller.console.app import action_user, render
from controller.ledger.accounts import Role
from controller.ledger.models import Proposal
from controller.loop import operator

router = APIRouter()

PARAM_PREFIX = "p:"


def _back(
    request: Request, campaign: str, message: str, anchor: str = "proposals", **extra
) -> Response:
    """Redirect to the campaign page at ``anchor``; the message shows at the top of the window."""
    user = request.state.user
    auth.set_flash(request.app.state.db, user.session_id, message, **extra)
    return RedirectResponse(f"/campaigns/{campaign}#{anchor}", status_code=303)


def _campaign_of(request: Request, proposal_id: int) -> str:
    from sqlmodel import Session

    from controller.ledger.models import Campaign

    with Session(request.app.state.db) as s:
        p = s.get(Proposal, proposal_id)
        if p is None:
            raise HTTPException(404, f"no proposal {proposal_id}")
        return s.get(Campaign, p.campaign_id).name


def _int_list(values: list) -> list[int]:
    try:
        return [int(i) for i in values]
    except ValueError:
        raise HTTPException(400, "proposal ids are integers") from None


def _outside_policy(db, ids: list[int], confirmed: bool) -> str | None:
    """An error when ``ids`` hold an escalated proposal approved without its confirmation."""
    out = operator.escalated(db, ids)
    if out and not confirmed:
        return (
            f"error: proposal {', '.join(map(str, out))} is outside the signed policy; approve it with "
            "its own button and tick its confirmation"
        )
    return None


@router.post("/campaigns/{name}/approve")
async def approve_many(request: Request, name: str) -> Response:
    """Approve the ticked proposals (``ids``), or with ``all=1`` every row that was shown
    (``shown``: the ids on the page the operator saw), escalated ones excluded."""
    user, form = await action_user(request)
    db = request.app.state.db
    ids = _int_list(form.getlist("shown") if form.get("all") else form.getlist("ids"))
    if not ids:
        return _back(request, name, "error: tick the proposals to approve, or approve all")
    refused = await run_in_threadpool(_outside_policy, db, ids, False)
    if refused:
        return _back(request, name, refused)
    try:
        done = await run_in_threadpool(operator.approve, db, ids, user.name, name)
    except operator.OperatorError as e:
        return _back(
            request, name, f"error: {e}; nothing was approved, check the list and try again"
        )
    return _back(request, name, f"approved {len(done)} proposal(s): {', '.join(map(str, done))}")


@router.post("/proposals/{proposal_id}/approve")
async def approve_one(request: Request, proposal_id: int) -> Response:
    """Approve one proposal; an escalated one needs ``outside_policy=yes`` (its confirmation box)."""
    user, form = await action_user(request)
    db = request.app.state.db
    name = await run_in_threadpool(_campaign_of, request, proposal_id)
    refused = await run_in_threadpool(
        _outside_policy, db, [proposal_id], form.get("outside_policy") == "yes"
    )
    if refused:
        return _back(request, name, refused, anchor=f"p{proposal_id}")
    try:
        await run_in_threadpool(operator.approve, db, [proposal_id], user.name)
    except operator.OperatorError as e:
        return _back(request, name, f"error: {e}")
    return _back(request, name, f"approved proposal {proposal_id}")


@router.post("/proposals/{proposal_id}/reject")
async def reject_one(request: Request, proposal_id: int) -> Response:
    user, form = await action_user(request)
    name = await run_in_threadpool(_campaign_of, request, proposal_id)
    reason = str(form.get("reason", "")).strip()
    try:
        await run_in_threadpool(
            operator.reject, request.app.state.db, proposal_id, reason, user.name
        )
    except operator.OperatorError as e:
        return _back(request, name, f"error: {e}")
    return _back(request, name, f"rejected proposal {proposal_id}: {reason}")


@router.post("/proposals/{proposal_id}/edit")
async def edit_one(request: Request, proposal_id: int) -> Response:
    """Edit and approve; a refused edit goes back to the page with the error next to the form."""
    user, form = await action_user(request)
    name = await run_in_threadpool(_campaign_of, request, proposal_id)
    # Only the fields the operator changed: the form shows values rounded to 6 digits.
    changes = {
        k[len(PARAM_PREFIX) :]: str(v).strip()
        for k, v in form.items()
        if k.startswith(PARAM_PREFIX)
        and str(v).strip() != ""
        and str(v).strip() != str(form.get("orig:" + k[len(PARAM_PREFIX) :], "")).strip()
    }
    reason = str(form.get("reason", "")).strip() or None
    try:
        params = await run_in_threadpool(
            operator.edit, request.app.state.db, proposal_id, changes, user.name, reason
        )
    except operator.AlreadyDecided as e:
        return _back(request, name, f"error: {e}")
    except operator.OperatorError as e:
        # back to the page (a reload must not post the edit again), the form open with the error
        edit = {proposal_id: {"error": str(e), "values": {**changes, "reason": reason or ""}}}
        return _back(
            request,
            name,
            f"error: proposal {proposal_id} not edited: {e}",
            anchor=f"p{proposal_id}",
            edit=edit,
        )
    shown = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
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
    from sqlmodel import Session

    from controller.console.views import account_events_view

    with Session(request.app.state.db) as s:
        log = account_events_view(s)
    return render(
        request, "users.html", {"users": auth.list_users(request.app.state.db), "log": log}
    )


@router.post("/admin/users")
async def users_add(request: Request) -> Response:
    user, form = await action_user(request, Role.ADMIN)
    try:
        await run_in_threadpool(
            lambda: auth.add_user(
                request.app.state.db,
                str(form.get("name", "")),
                str(form.get("password", "")),
                str(form.get("role", "viewer")),
                actor=user.name,
            )
        )
        msg = f"user {form.get('name')} added as {form.get('role')}"
    except auth.AccountError as e:
        msg = f"error: {e}"
    auth.set_flash(request.app.state.db, user.session_id, msg)
    return RedirectResponse("/admin/users", status_code=303)
