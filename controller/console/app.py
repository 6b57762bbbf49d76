"""The operator console: a FastAPI app with server-rendered Jinja2 pages (``cellpilot serve``).

    create_app(ledger_url) ─┬─ /login, /logout                 (this module)
                            ├─ pages, fragments, images, SSE    (controller.console.pages)
                            └─ approve / edit / reject / pause  (controller.console.actions)

Access: an unauthenticated page request is redirected to ``/login``; an unauthenticated
fragment, image, stream, API or action request gets 401; a viewer's action gets 403; an
action without the session's CSRF token gets 403. Every action goes through
``controller.loop.operator`` with the logged-in name as actor.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from controller.console import auth
from controller.console.auth import CurrentUser
from controller.ledger.accounts import Role
from controller.ledger.db import open_ledger_engine

HERE = Path(__file__).parent
SESSION_COOKIE = "cellpilot_session"
LOGIN_CSRF_COOKIE = "cellpilot_login_csrf"

templates = Jinja2Templates(directory=str(HERE / "templates"))


_UNSET = object()


class LoginRequired(Exception):
    """Raised by page handlers without a session: redirect to the login page."""


def current_user(request: Request) -> CurrentUser | None:
    if getattr(request.state, "user", _UNSET) is _UNSET:
        request.state.user = auth.load_session(request.app.state.db, request.cookies.get(SESSION_COOKIE))
    return request.state.user


def page_user(request: Request) -> CurrentUser:
    """The user of a page request; without a session the browser is sent to the login page."""
    user = current_user(request)
    if user is None:
        raise LoginRequired
    return user


def api_user(request: Request) -> CurrentUser:
    """The user of a fragment / image / API request; 401 without a session."""
    user = current_user(request)
    if user is None:
        raise HTTPException(401, "log in first")
    return user


async def action_user(request: Request, role: Role = Role.OPERATOR) -> tuple[CurrentUser, FormData]:
    """Check session (401), role (403) and CSRF token (403) of a state-changing request."""
    user = await run_in_threadpool(current_user, request)
    if user is None:
        raise HTTPException(401, "log in first")
    form = await request.form()
    given = form.get("csrf_token") or request.headers.get("x-csrf-token")
    if not auth.csrf_ok(user.csrf_token, given if isinstance(given, str) else None):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")
    if not user.can(role):
        raise HTTPException(403, f"{user.name} is a {user.role.value}; this needs the {role.value} role")
    return user, form


def render(request: Request, name: str, context: dict, status_code: int = 200, *, page: bool = True) -> Response:
    """A template with the user; a full ``page`` also shows (and clears) the one-shot flash
    message, a fragment never does (a live refresh must not swallow an action's result)."""
    user = current_user(request)
    flash = auth.pop_flash(request.app.state.db, user.session_id) if user and page else None
    ctx = {"user": user, "flash": flash, "Role": Role, **context}
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


def create_app(ledger_url: str, *, secure_cookies: bool = False) -> FastAPI:
    """The console for the ledger at ``ledger_url`` (migrated to the newest schema on start)."""
    from controller.console import actions, pages, plate_actions

    app = FastAPI(title="cellpilot console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = open_ledger_engine(ledger_url)
    app.state.ledger_url = ledger_url
    app.state.secure_cookies = secure_cookies
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, _exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        wants_html = "text/html" in request.headers.get("accept", "") and request.method == "GET"
        if exc.status_code in (401, 403) and not wants_html:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        if exc.status_code in (401, 403, 404):
            return render(request, "error.html", {"status": exc.status_code, "detail": exc.detail},
                          status_code=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/login")
    def login_page(request: Request, next: str = "/", error: str | None = None) -> Response:
        token = secrets.token_urlsafe(24)
        resp = templates.TemplateResponse(request, "login.html", {
            "user": None, "flash": None, "next": _safe_next(next), "error": error, "login_csrf": token})
        _set_cookie(request, resp, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return resp

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        # Login CSRF: the form's token must match the cookie set with the form (double submit).
        if not auth.csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE, ""), str(form.get("csrf_token", ""))):
            raise HTTPException(403, "the login form expired; reload it")
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        nxt = _safe_next(str(form.get("next", "/")))
        user = await run_in_threadpool(auth.authenticate, request.app.state.db, name, password)
        if user is None:
            return RedirectResponse(f"/login?error=1&next={quote(nxt)}", status_code=303)
        token = await run_in_threadpool(auth.create_session, request.app.state.db, user.id)
        resp = RedirectResponse(nxt, status_code=303)
        _set_cookie(request, resp, SESSION_COOKIE, token, max_age=int(auth.SESSION_TTL.total_seconds()))
        resp.delete_cookie(LOGIN_CSRF_COOKIE)
        return resp

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await action_user(request, Role.VIEWER)
        await run_in_threadpool(auth.end_session, request.app.state.db, request.cookies.get(SESSION_COOKIE))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    app.include_router(pages.router)
    app.include_router(actions.router)
    app.include_router(plate_actions.router)
    return app


def _set_cookie(request: Request, resp: Response, key: str, value: str, max_age: int) -> None:
    secure = request.app.state.secure_cookies or request.url.scheme == "https"
    resp.set_cookie(key, value, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/")
