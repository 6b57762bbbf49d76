"""Read-only routes: pages, HTML fragments for live updates, PNGs, the SSE stream, JSON."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from controller.console import images, views
from controller.console.app import api_user, page_user, render
from controller.console.auth import CurrentUser
from controller.ledger.models import Campaign, RawData, Round
from controller.ledger.queries import (
    _summary,
    analysis_versions,
    failed_plates,
    waiting_for_approval,
)

router = APIRouter()
PageUser = Annotated[CurrentUser, Depends(page_user)]
ApiUser = Annotated[CurrentUser, Depends(api_user)]

FRAGMENTS = ("status", "proposals", "images", "plates", "health", "events")
STREAM_POLL_S = 0.5
STREAM_MAX_S = 300.0  # the browser's EventSource reconnects by itself


def campaigns_summary(request: Request) -> list[dict[str, Any]]:
    """Every campaign with its state (the same summary as ``cellpilot status``)."""
    with Session(request.app.state.db) as s:
        return [_summary(s, c) for c in s.exec(select(Campaign).order_by(col(Campaign.id)))]


def campaign_context(request: Request, name: str) -> dict[str, Any]:
    """Everything the campaign page and its fragments show."""
    db = request.app.state.db
    with Session(db) as s:
        camp = views.get_campaign(s, name)
        if camp is None:
            raise HTTPException(404, f"no campaign named {name!r}")
        s.expunge(camp)
        ctx = {
            "camp": camp,
            "approval_mode": (camp.spec.get("approval") or {}).get("mode", "auto"),
            "progress": views.progress_view(s, camp),
            "images": views.images_view(s, camp),
            "health": views.health_view(s, camp),
            **views.plates_view(s, camp),
            "events": views.events_view(s, camp),
            "measured": len(views.measured_experiments(s, camp)),
            "waiting": waiting_for_approval(s, camp),
            "failed_plates": failed_plates(s, camp),
            "analysis": analysis_versions(s, camp),
        }
    ctx["proposals"] = views.proposals_view(db, camp)
    ctx.setdefault("edit_errors", {})
    ctx.setdefault("edit_values", {})
    return ctx


@router.get("/")
def campaigns_page(request: Request, user: PageUser) -> Response:
    rows = campaigns_summary(request)
    return render(request, "campaigns.html", {"campaigns": rows})


@router.get("/campaigns/{name}")
def campaign_page(request: Request, name: str, user: PageUser) -> Response:
    return render(request, "campaign.html", campaign_context(request, name))


@router.get("/campaigns/{name}/fragment/{section}")
def campaign_fragment(request: Request, name: str, section: str, user: ApiUser) -> Response:
    if section not in FRAGMENTS:
        raise HTTPException(404, f"no section {section!r}")
    return render(request, f"_{section}.html", campaign_context(request, name), page=False)


@router.get("/campaigns/{name}/convergence.png")
def convergence(request: Request, name: str, user: ApiUser) -> Response:
    with Session(request.app.state.db) as s:
        camp = views.get_campaign(s, name)
        if camp is None:
            raise HTTPException(404, f"no campaign named {name!r}")
        png = images.convergence_png(camp.id, camp.spec, views.measured_experiments(s, camp))
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-cache"})


@router.get("/campaigns/{name}/timeline.png")
def timeline(request: Request, name: str, user: ApiUser) -> Response:
    from controller.ledger.queries import campaign_timeline
    from controller.report.timeline import timeline_png

    with Session(request.app.state.db) as s:
        camp = views.get_campaign(s, name)
        if camp is None:
            raise HTTPException(404, f"no campaign named {name!r}")
        png = timeline_png(
            campaign_timeline(s, camp), now_h=(camp.clock_s - camp.started_clock_s) / 3600
        )
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-cache"})


@router.get("/images/{raw_id}.png")
def thumbnail(request: Request, raw_id: int, user: ApiUser, channel: str | None = None) -> Response:
    with Session(request.app.state.db) as s:
        raw = s.get(RawData, raw_id)
        if raw is None or s.get(Round, raw.round_id) is None:
            raise HTTPException(404, f"no image {raw_id}")
        s.expunge(raw)
    try:
        png = images.well_thumbnail(raw, channel)
    except (OSError, ValueError) as e:
        raise HTTPException(404, f"image {raw_id} cannot be read: {e}") from None
    return Response(
        png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )


@router.get("/campaigns/{name}/stream")
async def stream(request: Request, name: str, user: ApiUser) -> Response:
    """Server-sent events: one ``change`` message whenever the campaign's ledger rows move
    (a new event, a step finished, a state change)."""
    db = request.app.state.db

    async def gen():
        last = None
        started = time.monotonic()
        yield "retry: 2000\n\n"
        max_s = getattr(request.app.state, "stream_max_s", STREAM_MAX_S)
        while time.monotonic() - started < max_s:
            if await request.is_disconnected():
                return
            sig = await run_in_threadpool(views.live_signature, db, name)
            if sig != last:
                last = sig
                yield f"event: change\ndata: {json.dumps(list(sig), default=str)}\n\n"
            else:
                yield ": keep-alive\n\n"
            await asyncio.sleep(STREAM_POLL_S)

    return StreamingResponse(
        gen(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/api/campaigns")
def api_campaigns(request: Request, user: ApiUser) -> Response:
    return JSONResponse(json.loads(json.dumps(campaigns_summary(request), default=str)))


@router.get("/api/campaigns/{name}/proposals")
def api_proposals(request: Request, name: str, user: ApiUser) -> Response:
    with Session(request.app.state.db) as s:
        camp = views.get_campaign(s, name)
        if camp is None:
            raise HTTPException(404, f"no campaign named {name!r}")
        s.expunge(camp)
    rows = views.proposals_view(request.app.state.db, camp)
    return JSONResponse(
        json.loads(
            json.dumps([{k: v for k, v in r.items() if k != "fields"} for r in rows], default=str)
        )
    )
