"""The operator console: a FastAPI app with server-rendered Jinja2 pages (``cellpilot serve``).

    create_app(ledger_url) ─┬─ /login, /logout                 (this module)
                            ├─ pages, fragments, images, SSE    (controller.console.pages)
                            ├─ approve / edit / reject / pause  (controller.console.actions)
                            └─ the screening report             (controller.console.report)

Access: an unauthenticated page request is redirected to ``/login``; an unauthenticated
fragment, image, stream, API or action request gets 401; a viewer's action gets 403; an
action without the session's CSRF token gets 403. A form a browser posts (``Accept:
text/html``) never ends on a raw error: an expired session goes to the login page and back to
the page the form was on, a stale CSRF token or a refused role back to that page with the
reason. Every action goes through ``controller.loop.operator`` with the logged-in name as actor.

Every response forbids framing (``X-Frame-Options: DENY``, ``frame-ancestors 'none'``), so
another page cannot overlay live Approve buttons. Cookie names carry the console's instance
(``cellpilot serve`` uses its port), so two consoles on one host keep separate sessions.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit

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
from controller.ledger.secrets import mask_url

HERE = Path(__file__).parent
SESSION_COOKIE = "cellpilot_session"
LOGIN_CSRF_COOKIE = "cellpilot_login_csrf"
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

templates = Jinja2Templates(directory=str(HERE / "templates"))


_UNSET = object()


class LoginRequired(Exception):
    """Raised by page handlers without a session: redirect to the login page."""


class CsrfRefused(HTTPException):
    """A state-changing request without the session's CSRF token (403)."""


def session_cookie(request: Request) -> str:
    return request.app.state.session_cookie


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def current_user(request: Request) -> CurrentUser | None:
    if getattr(request.state, "user", _UNSET) is _UNSET:
        request.state.user = auth.load_session(
            request.app.state.db, request.cookies.get(session_cookie(request))
        )
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
        raise CsrfRefused(403, "missing or wrong CSRF token; reload the page and try again")
    if not user.can(role):
        raise HTTPException(
            403, f"{user.name} is a {user.role.value}; this needs the {role.value} role"
        )
    return user, form


def render(
    request: Request, name: str, context: dict, status_code: int = 200, *, page: bool = True
) -> Response:
    """A template with the user; a full ``page`` also shows (and clears) the one-shot flash
    message, a fragment never does (a live refresh must not swallow an action's result).
    A refused edit's error and values come back through the flash, next to its form."""
    user = current_user(request)
    flash = auth.pop_flash(request.app.state.db, user.session_id) if user and page else None
    ctx = {"user": user, "flash": flash["message"] if flash else None, "Role": Role, **context}
    edit = (flash or {}).get("edit") or {}
    ctx["edit_errors"] = {
        **{int(k): v["error"] for k, v in edit.items()},
        **context.get("edit_errors", {}),
    }
    ctx["edit_values"] = {
        **{int(k): v["values"] for k, v in edit.items()},
        **context.get("edit_values", {}),
    }
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _back_path(request: Request) -> str:
    """The page a browser form was posted from (same origin only), else the campaign list."""
    ref = urlsplit(request.headers.get("referer", ""))
    if ref.netloc and ref.netloc != request.url.netloc:
        return "/"
    return _safe_next(ref.path + (f"?{ref.query}" if ref.query else "") if ref.path else "/")


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


def cookie_names(instance: str | None) -> tuple[str, str]:
    """(session cookie, login-form cookie) of a console instance."""
    suffix = f"_{re.sub(r'[^A-Za-z0-9]', '_', instance)}" if instance else ""
    return SESSION_COOKIE + suffix, LOGIN_CSRF_COOKIE + suffix


def create_app(
    ledger_url: str, *, secure_cookies: bool = False, instance: str | None = None
) -> FastAPI:
    """The console for the ledger at ``ledger_url`` (migrated to the newest schema on start).

    Args:
        instance: names this console's cookies (``cellpilot serve`` passes its port), so two
            consoles on one host do not log each other out.
    """
    from controller.console import actions, pages, plate_actions, report

    app = FastAPI(title="cellpilot console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = open_ledger_engine(ledger_url)
    app.state.ledger_url = mask_url(ledger_url)
    app.state.reports = report.ReportCache(ledger_url)
    app.state.secure_cookies = secure_cookies
    app.state.session_cookie, app.state.login_cookie = cookie_names(instance)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def _security_headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, _exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        html = _wants_html(request)
        if html and request.method == "POST" and exc.status_code in (401, 403):
            return await run_in_threadpool(_form_refused, request, exc)
        if exc.status_code in (401, 403) and not (html and request.method == "GET"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        if exc.status_code in (401, 403, 404):
            return render(
                request,
                "error.html",
                {"status": exc.status_code, "detail": exc.detail},
                status_code=exc.status_code,
            )
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/login")
    def login_page(
        request: Request,
        next: str = "/",
        error: str | None = None,
        retry: int = 0,
        expired: int = 0,
    ) -> Response:
        token = secrets.token_urlsafe(24)
        resp = templates.TemplateResponse(
            request,
            "login.html",
            {
                "user": None,
                "flash": None,
                "next": _safe_next(next),
                "error": error,
                "retry": retry,
                "expired": expired,
                "login_csrf": token,
            },
        )
        _set_cookie(request, resp, request.app.state.login_cookie, token, max_age=3600)
        return resp

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        nxt = _safe_next(str(form.get("next", "/")))
        # Login CSRF: the form's token must match the cookie set with the form (double submit).
        if not auth.csrf_ok(
            request.cookies.get(request.app.state.login_cookie, ""), str(form.get("csrf_token", ""))
        ):
            if _wants_html(request):  # an old login tab: a fresh form, not an error page
                return RedirectResponse(f"/login?error=expired&next={quote(nxt)}", status_code=303)
            raise HTTPException(403, "the login form expired; reload it")
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        try:
            user = await run_in_threadpool(
                auth.authenticate,
                request.app.state.db,
                name,
                password,
                address=client_address(request),
            )
        except auth.LoginRefused as e:
            kind = "locked" if "too many" in str(e) else "busy"
            return RedirectResponse(
                f"/login?error={kind}&retry={e.retry_after_s}&next={quote(nxt)}", status_code=303
            )
        if user is None:
            return RedirectResponse(f"/login?error=1&next={quote(nxt)}", status_code=303)
        token = await run_in_threadpool(auth.create_session, request.app.state.db, user.id)
        resp = RedirectResponse(nxt, status_code=303)
        _set_cookie(
            request,
            resp,
            request.app.state.session_cookie,
            token,
            max_age=int(auth.SESSION_TTL.total_seconds()),
        )
        resp.delete_cookie(request.app.state.login_cookie)
        return resp

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        await action_user(request, Role.VIEWER)
        await run_in_threadpool(
            auth.end_session,
            request.app.state.db,
            request.cookies.get(request.app.state.session_cookie),
            address=client_address(request),
        )
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(request.app.state.session_cookie)
        return resp

    app.include_router(pages.router)
    app.include_router(actions.router)
    app.include_router(plate_actions.router)
    app.include_router(report.router)
    return app


def _form_refused(request: Request, exc: HTTPException) -> Response:
    """A browser's form refused: log in and come back, or go back with the reason shown."""
    back = _back_path(request)
    user = current_user(request)
    if exc.status_code == 401 or user is None:
        return RedirectResponse(f"/login?expired=1&next={quote(back)}", status_code=303)
    if isinstance(exc, CsrfRefused):
        message = "error: the page was out of date, so nothing was done; check it and try again"
    else:
        message = f"error: {exc.detail}"
    auth.set_flash(request.app.state.db, user.session_id, message)
    return RedirectResponse(back, status_code=303)


def _set_cookie(request: Request, resp: Response, key: str, value: str, max_age: int) -> None:
    secure = request.app.state.secure_cookies or request.url.scheme == "https"
    resp.set_cookie(
        key, value, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/"
    )
