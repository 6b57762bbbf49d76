"""Re-analysis with provenance: ``reanalyze``, ``analysis list``, ``analysis use``.

    cellpilot reanalyze --campaign NAME [--settings FILE | --analyzer NAME] [--note TEXT] [--adopt]
    cellpilot analysis list --campaign NAME [--json]
    cellpilot analysis use --campaign NAME --version N [--reason TEXT]

``reanalyze`` checks the stored images' SHA-256 first (a missing or altered file: exit 4, as
``verify`` on tampering, and nothing is written), then records a new analysis version; with
``--adopt`` the campaign plans from it from its next round on. ``analysis use`` adopts any
version. Who acts is established as for approvals (:func:`controller.cli.common.operator_identity`);
both are recorded as sealed events. See :mod:`controller.loop.reanalysis`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from controller.cli.common import (
    ActorOpt,
    JsonOpt,
    LedgerOpt,
    PasswordStdinOpt,
    UserOpt,
    console,
    done,
    fail,
    ledger_engine,
    ledger_url,
    operator_identity,
)

EXIT_INTEGRITY = 4  # as `cellpilot verify` when it finds tampering

CampaignName = Annotated[str, typer.Option("--campaign", help="campaign name")]
analysis_app = typer.Typer(
    no_args_is_help=True, help="analysis versions of a campaign (re-analysis)"
)


def read_settings(path: Path) -> tuple[str | None, dict[str, Any]]:
    """(analyzer name or None, settings) from a YAML/JSON file: a mapping of settings, an
    ``analyzer:`` block (``name``, ``settings``), or a whole campaign file (its ``analyzer``)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        fail(f"--settings {path}: cannot read it ({e})")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        fail(
            f"--settings {path}: expected a mapping of analyzer settings, got {type(data).__name__}"
        )
    if isinstance(data.get("analyzer"), dict):
        data = data["analyzer"]
    if set(data) <= {"name", "settings"} and data:
        settings = data.get("settings") or {}
        if not isinstance(settings, dict):
            fail(f"--settings {path}: 'settings' must be a mapping")
        return data.get("name"), settings
    return None, data


def reanalyze(
    campaign: CampaignName,
    settings: Annotated[
        Path | None,
        typer.Option(
            "--settings",
            help="YAML/JSON: the analyzer's settings (or an analyzer: block, or a campaign file)",
        ),
    ] = None,
    analyzer: Annotated[
        str | None,
        typer.Option("--analyzer", help="registered analyzer (default: the adopted one)"),
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="why (kept with the version)")] = None,
    adopt: Annotated[
        bool, typer.Option("--adopt", help="plan from the new version from the next round on")
    ] = False,
    ledger: LedgerOpt = None,
    actor: ActorOpt = None,
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-analyse a campaign's stored images (checksums first) into a new analysis version."""
    from controller.ledger.db import open_ledger_engine
    from controller.loop.reanalysis import RawDataMismatch, ReanalysisError
    from controller.loop.reanalysis import reanalyze as do_reanalyze

    file_analyzer, values = read_settings(settings) if settings is not None else (None, None)
    if analyzer and file_analyzer and analyzer != file_analyzer:
        fail(f"--analyzer {analyzer} but --settings {settings} names analyzer {file_analyzer}")
    url = ledger_url(ledger)
    db = open_ledger_engine(url)
    who, claimed = operator_identity(db, url, user=user, claim=actor, password_stdin=password_stdin)
    try:
        out = do_reanalyze(
            db,
            campaign,
            actor=who,
            analyzer=analyzer or file_analyzer,
            settings=values,
            note=note,
            claimed_as=claimed,
            adopt_it=adopt,
        )
    except RawDataMismatch as e:
        fail(str(e), EXIT_INTEGRITY)
    except ReanalysisError as e:
        fail(str(e))
    text = (
        f"analysis version {out['version']} of campaign {campaign} recorded: analyzer {out['analyzer']}, "
        f"{out['raw_files_checked']} image files checked, rounds {out['rounds']}; "
        f"{out['outcomes_changed']} experiment(s) with other outcomes and {out['status_changed']} with "
        f"another status than version {out['based_on']}"
    )
    text += (
        f"\nthe campaign now plans from version {out['version']}"
        if out["adopted"]
        else f"\nthe campaign still plans from version {out['based_on']} (adopt: cellpilot analysis use "
        f"--campaign {campaign} --version {out['version']})"
    )
    done(as_json, out, text)


@analysis_app.command("list")
def list_versions(
    campaign: CampaignName, ledger: LedgerOpt = None, as_json: JsonOpt = False
) -> None:
    """List a campaign's analysis versions: analyzer, settings, code version, which is adopted."""
    from sqlmodel import Session

    from controller.ledger.queries import analysis_versions, find_campaign

    with Session(ledger_engine(ledger)) as s:
        camp = find_campaign(s, campaign)
        if camp is None:
            fail(f"no campaign named {campaign!r}")
        rows = analysis_versions(s, camp, outcomes=as_json)
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    for v in rows:
        mark = "*" if v["adopted"] else " "
        code = v["code_version"] or {}
        console.print(
            f"{mark} version {v['number']}: {v['analyzer']} {json.dumps(v['settings'])} "
            f"(code {code.get('package') or '?'} {(code.get('commit') or '')[:12]}; "
            f"by {v['created_by']}; rounds {v['rounds']}){' — ' + v['note'] if v['note'] else ''}",
            highlight=False,
            soft_wrap=True,
        )


@analysis_app.command("use")
def use(
    campaign: CampaignName,
    version: Annotated[int, typer.Option("--version", help="analysis version number")],
    reason: Annotated[
        str | None, typer.Option("--reason", help="why (kept in the audit trail)")
    ] = None,
    ledger: LedgerOpt = None,
    actor: ActorOpt = None,
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Plan from another analysis version from the next round on (recorded as an event)."""
    from controller.ledger.db import open_ledger_engine
    from controller.loop.reanalysis import ReanalysisError, adopt

    url = ledger_url(ledger)
    db = open_ledger_engine(url)
    who, claimed = operator_identity(db, url, user=user, claim=actor, password_stdin=password_stdin)
    try:
        out = adopt(db, campaign, version, who, reason=reason, claimed_as=claimed)
    except ReanalysisError as e:
        fail(str(e))
    held = (
        f"; plate(s) now held for a QC decision: {out['held_plates']}" if out["held_plates"] else ""
    )
    done(
        as_json,
        out,
        f"campaign {campaign} now plans from analysis version {version} (was {out['previous']}); "
        f"{out['outcomes_changed']} experiment(s) with other outcomes{held}",
    )


def register(app: typer.Typer) -> None:
    app.command()(reanalyze)
    app.add_typer(analysis_app, name="analysis")
