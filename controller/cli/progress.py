"""Terminal views: live rich progress of a run (subscribed to events) and status tables."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from controller.loop.events import EventKind, bus


class ProgressView:
    """Shows each plate's steps as a progress bar (one per plate in flight, removed when the
    plate is analysed) and a line per analysed plate."""

    def __init__(self, console: Console, spec, enabled: bool = True) -> None:
        self.console = console
        self.spec = spec
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
        )
        self.tasks: dict[int, TaskID] = {}  # round id -> its plate's bar
        self.round_of_plate: dict[str, int] = {}
        self._unsub: Callable[[], None] | None = None

    def __enter__(self) -> ProgressView:
        self.progress.__enter__()
        self._unsub = bus.subscribe(self._on_event)
        return self

    def __exit__(self, *exc) -> None:
        if self._unsub:
            self._unsub()
        self.progress.__exit__(*exc)

    def _on_event(self, kind: EventKind, p: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if kind == EventKind.ROUND_PROPOSED:
            self.console.print(
                f"round {p['round']}: {p['n']} experiments proposed for plate {p['plate']}"
            )
        elif kind == EventKind.ROUND_COMPILED:
            rid = p.get("round_id", -1)
            self.round_of_plate[p["plate"]] = rid
            self.tasks[rid] = self.progress.add_task(f"plate {p['plate']}", total=p["steps"])
        elif kind == EventKind.STEP_DONE and p.get("round_id") in self.tasks:
            self.progress.advance(self.tasks[p["round_id"]])
        elif kind == EventKind.DECISION_APPLIED:
            self.console.print(
                f"  plate {p['plate']} decision {p['decision'] + 1} ({p['policy_id']}): "
                f"{_actions_text(p['actions_applied'])}"
            )
            task = self.tasks.get(self.round_of_plate.get(p["plate"], -2))
            if task is not None:  # the plate's journal grew by the action's steps
                total = self.progress.tasks[task].total or 0
                self.progress.update(task, total=total + p["steps"])
        elif kind == EventKind.WELL_QUARANTINED:
            self.console.print(f"[yellow]well {p['well']} quarantined:[/] {p['reason']}")
        elif kind == EventKind.ROUND_ANALYZED:
            done = self.tasks.pop(self.round_of_plate.get(p.get("plate", ""), -2), None)
            if done is not None:
                self.progress.remove_task(done)
            z = p.get("z_prime") or {}
            zs = ", ".join(f"{k} {v:.2f}" for k, v in z.items() if v is not None)
            ok = "[green]ok[/]" if p.get("plate_ok") else "[red]suspect[/]"
            self.console.print(
                f"  plate {p['plate']} analysed: {p['measured']} experiments measured; Z' {zs} {ok}"
            )
        elif kind == EventKind.ROUND_AWAITING_APPROVAL:
            self.console.print(
                f"[yellow]round {p['round']} waits for approval of {p['n']} proposals[/] "
                "(cellpilot proposals / approve / reject / edit)"
            )
        elif kind == EventKind.PROPOSAL_ESCALATED:
            self.console.print(f"[yellow]proposal {p['proposal_id']} escalated:[/] {p['reason']}")
        elif kind == EventKind.APPROVAL_TIMEOUT:
            self.console.print(f"[yellow]approval timed out:[/] {p['action']}")
        elif kind == EventKind.CAMPAIGN_HELD:
            self.console.print(
                f"[yellow]campaign held:[/] {p['reason']} (cellpilot resume / abort)"
            )
        elif kind == EventKind.PLATE_QC_FAILED and "analysable" in p:
            self.console.print(
                f"[red]plate of round {p['round']} could not be analysed:[/] {p['reason']}"
            )

    def summary(self, result) -> None:
        c = self.console
        if result.status == "paused":
            c.print(f"[bold yellow]campaign {result.campaign} paused:[/] {result.pause_reason}")
            c.print("Fix the cause, then run the same command again to resume.")
            return
        c.print(
            f"[bold green]campaign {result.campaign} {result.status}[/]: {result.rounds} plates, "
            f"{result.valid_experiments} valid experiments"
        )
        if result.best:
            outs = ", ".join(f"{k}={v:.3f}" for k, v in result.best["outcomes"].items())
            pars = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in result.best["params"].items()
            )
            c.print(f"best measured (meeting every outcome constraint): {pars} -> {outs}")
        sched = result.schedule
        if sched and sched["plates"] > 1:
            c.print(
                f"workcell time: {sched['elapsed_h'] / 24:.1f} days with plates in flight; one plate at "
                f"a time would have taken {sched['one_plate_at_a_time_h'] / 24:.1f} days "
                f"(saved {sched['saved_days']:.1f} days)"
            )


def print_status(console: Console, data: Any, detailed: bool) -> None:
    rows = [data] if detailed else data
    t = Table(title="campaigns")
    for col_name in ("name", "status", "rounds", "valid experiments", "clock (h)", "best"):
        t.add_column(col_name)
    for d in rows:
        best = d.get("best")
        t.add_row(
            d["name"],
            d["status"],
            str(d["rounds"]),
            str(d["valid_experiments"]),
            f"{d['clock_h']:.1f}",
            f"{best['metric']}={best['value']:.3f}" if best else "-",
        )
    console.print(t)
    if detailed:
        if data.get("pause_reason"):
            console.print(f"[yellow]paused:[/] {data['pause_reason']}")
        r = Table(title=f"plates of {data['name']}")
        for col_name in (
            "round",
            "plate",
            "where",
            "experiments",
            "Z'",
            "quarantined wells",
            "analysis",
        ):
            r.add_column(col_name)
        for rd in data["round_details"]:
            z = (rd["z_prime"] or {}).get("tumour_count")
            version = rd.get("analysis_version")
            r.add_row(
                str(rd["index"] + 1),
                rd["plate"],
                _where(rd, data),
                str(rd["experiments"]),
                f"{z:.2f}" if z is not None else "-",
                ", ".join(rd["quarantined_wells"]) or "-",
                f"v{version}" if version else "-",
            )
        console.print(r)
        _print_versions(console, data)
        for rd in data["round_details"]:
            if rd.get("decisions"):
                console.print(decisions_table(rd))


def _print_versions(console: Console, data: dict[str, Any]) -> None:
    """One line per analysis version; the adopted one (the planner learns from it) starred."""
    versions = data.get("analysis_versions") or []
    if len(versions) < 2:
        return
    for v in versions:
        code = v.get("code_version") or {}
        console.print(
            f"{'*' if v['adopted'] else ' '} analysis v{v['number']}: {v['analyzer']} "
            f"{json.dumps(v['settings'])} (code {code.get('package') or '?'} "
            f"{(code.get('commit') or '')[:10]}; by {v['created_by']}; rounds {v['rounds']})",
            highlight=False,
            soft_wrap=True,
        )


def decisions_table(rd: dict[str, Any]) -> Table:
    """A time-course plate's decision points: time, policy, gate, and each unit's action."""
    t = Table(title=f"decision points of plate {rd['plate']}")
    for col_name in ("decision", "at (h)", "policy", "gate", "actions (x = exchange, drugs +µM)"):
        t.add_column(col_name)
    for d in rd["decisions"]:
        gate = f"{d['waiting']} waiting" if d["waiting"] else "decided"
        if d["rejected"]:
            gate += f", {d['rejected']} rejected"
        acts = _actions_text(d["actions"] or {})
        t.add_row(
            str(d["index"] + 1),
            f"{d['time_h']:g}",
            d["policy_id"] or "-",
            gate if d["status"] != "compiled" else f"applied ({gate})",
            acts or "-",
        )
    return t


def _actions_text(actions: dict[str, Any]) -> str:
    """Units grouped by the action they got: ``x drug_b 0.25: groups 1-3, 5``."""
    by: dict[str, list[str]] = {}
    for unit in sorted(actions, key=lambda u: (0, int(u), "") if u.isdigit() else (1, 0, u)):
        by.setdefault(_action_text(actions[unit]), []).append(
            str(int(unit) + 1) if unit.isdigit() else unit
        )
    if len(by) == 1:
        return f"{next(iter(by))} (all {len(actions)})"
    return "; ".join(f"{text}: {', '.join(units)}" for text, units in by.items())


def _action_text(a: dict[str, Any]) -> str:
    doses = " ".join(f"{k} {v:g}" for k, v in (a.get("doses_um") or {}).items())
    return (("x " if a.get("exchange") else "") + doses).strip() or "nothing"


def _where(rd: dict[str, Any], data: dict[str, Any]) -> str:
    """A plate's place; an incubating plate says until when (campaign clock hours)."""
    place = rd.get("place") or rd["status"]
    until = rd.get("incubating_until_clock_s")
    if until is not None and data.get("started_clock_s") is not None:
        return f"{place} until {(until - data['started_clock_s']) / 3600:.1f} h"
    return place


def print_proposals(console: Console, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no proposal is waiting for a decision")
        return
    t = Table(title="proposals waiting for a decision")
    for col_name in ("id", "round", "parameters", "predicted", "why waiting"):
        t.add_column(col_name)
    for r in rows:
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items()
        )
        pred = ", ".join(
            f"{m} {mu:.3f}±{r['predicted_sd'].get(m, 0):.3f}"
            for m, mu in r["predicted_mean"].items()
        )
        t.add_row(
            str(r["id"]),
            str(r["round"]),
            params,
            pred or "(initial design)",
            r["escalation"] or "-",
        )
    console.print(t)
