"""The screening report in the console: ``/campaigns/{name}/report/`` serves the same page as
``cellpilot report`` (dose-response fits, synergy, predicted vs measured, thumbnails, per-plate
QC, time-courses with the agent's actions), built from the ledger on demand.

The report is written into a private folder of this console process and rebuilt only when the
campaign has moved since (its newest event, steps done, state), so a person can reload the page
while a campaign runs. Any logged-in user may read it, as they may read the campaign page.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from controller.console import views
from controller.console.app import page_user
from controller.console.auth import CurrentUser

router = APIRouter()
PageUser = Annotated[CurrentUser, Depends(page_user)]

#: what a report folder holds; anything else is not served
SERVED = {".html": "text/html; charset=utf-8", ".png": "image/png", ".csv": "text/csv"}


class ReportCache:
    """Report folders of one console process, one per campaign, each tagged with the campaign
    state it was built from; a lock per campaign so two readers do not build it twice."""

    def __init__(self, ledger_url: str) -> None:
        self._url = ledger_url  # unmasked: the report opens its own connection
        self._root = Path(tempfile.mkdtemp(prefix="cellpilot-console-report-"))
        self._built: dict[str, Any] = {}  # campaign -> the state its folder was built from
        self._slots: dict[str, tuple[threading.Lock, Path]] = {}  # campaign -> lock, folder
        self._guard = threading.Lock()
        weakref.finalize(self, shutil.rmtree, self._root, True)  # at exit too

    def folder(self, db, name: str) -> Path:
        """The campaign's report folder, rebuilt first if the campaign has moved.

        Raises:
            HTTPException: 404 when there is no such campaign.
        """
        with self._guard:  # each campaign its own lock and folder, assigned once
            lock, out = self._slots.setdefault(
                name, (threading.Lock(), self._root / str(len(self._slots)))
            )
        with lock:
            sig = views.live_signature(db, name)
            if sig == (None,):
                raise HTTPException(404, f"no campaign named {name!r}")
            if self._built.get(name) != sig:
                from controller.report import write_report

                fresh = out.with_name(out.name + ".new")
                shutil.rmtree(fresh, ignore_errors=True)
                write_report(self._url, name, fresh)
                shutil.rmtree(out, ignore_errors=True)
                fresh.rename(out)
                self._built[name] = sig
            return out


def _cache(request: Request) -> ReportCache:
    return request.app.state.reports


@router.get("/campaigns/{name}/report")
def report_root(name: str, user: PageUser) -> Response:
    # relative links in the page (its PNGs) need the folder's trailing slash
    return RedirectResponse(f"/campaigns/{name}/report/", status_code=307)


@router.get("/campaigns/{name}/report/")
def report_page(request: Request, name: str, user: PageUser) -> Response:
    folder = _cache(request).folder(request.app.state.db, name)
    return FileResponse(
        folder / "index.html",
        media_type=SERVED[".html"],
        headers={"Cache-Control": "private, no-cache"},
    )


@router.get("/campaigns/{name}/report/{file}")
def report_file(request: Request, name: str, file: str, user: PageUser) -> Response:
    suffix = Path(file).suffix
    if suffix not in SERVED or Path(file).name != file or file.startswith("."):
        raise HTTPException(404, f"no report file {file!r}")
    folder = _cache(request).folder(request.app.state.db, name)
    path = folder / file
    if not path.is_file():
        raise HTTPException(404, f"no report file {file!r}")
    return FileResponse(
        path, media_type=SERVED[suffix], headers={"Cache-Control": "private, no-cache"}
    )
