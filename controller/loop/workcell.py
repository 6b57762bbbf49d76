"""Several plates in flight: where each plate is, and what the workcell does next.

The runner is one thread driving one liquid handler and one microscope; an incubator holds
``incubator_slots`` plates. A plate's compiled steps fall into *segments* by the resource they
need (pipetting on the handler, the incubation in a slot, imaging on the microscope). The
handler and the microscope are used one segment at a time; incubations run side by side, and
that is where the time goes (a 48 h incubation against ~20 min of pipetting and imaging). So
while plate k incubates, plate k+1 is proposed (plate k's experiments are passed to the planner
as pending), approved, pipetted and put in the incubator.

:func:`next_action` is a pure function of the plates' places and the clock: event-driven list
scheduling on the injected clock, in this order of urgency:

1. image a plate whose incubation has ended (reads are time-critical);
2. take a plate out of the incubator when its time is up (a read later than
   ``read_tolerance_h`` is recorded as late, with its lateness);
3. analyse a plate whose steps are all done (a time-course plate: its latest images);
   decide the next action of a time-course plate that was analysed (``deciding``);
4. put a freshly pipetted plate into the incubator;
5. continue pipetting a plate already started;
6. start pipetting a compiled plate, if an incubator slot will be free for it;
7. compile an approved plate; pass a proposed plate through the approval gate;
8. propose a new plate, if fewer than ``max_plates_in_flight`` are in flight, none waits for a
   person, and the budget allows;
9. otherwise wait: until the next incubation ends, or (someone must decide) a poll interval.

A choice between two plates goes to the earlier-proposed one. The schedule never double-books
an instrument (one segment at a time) or an incubator slot (a plate is pipetted only when a slot
will be free, and enters the incubator only into a free slot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

#: step kind -> the resource it occupies
RESOURCE_OF_STEP = {
    "aspirate": "liquid_handler",
    "dispense": "liquid_handler",
    "mix": "liquid_handler",
    "withdraw": "liquid_handler",
    "incubate": "incubator",
    "acquire": "microscope",
}


class Place(str, Enum):
    """Where a plate is, as operators see it."""

    WAITING_FOR_APPROVAL = "waiting for approval"
    DECIDING = "waiting for a decision"
    APPROVED = "approved"
    COMPILED = "ready to pipette"
    DISPENSING = "dispensing"
    WAITING_FOR_INCUBATOR = "waiting for an incubator slot"
    INCUBATING = "incubating"
    IMAGING = "imaging"
    ANALYSING = "analysing"
    ANALYSED = "analysed"


@dataclass(frozen=True)
class StepView:
    """One journaled step, as the scheduler needs it."""

    seq: int
    kind: str
    status: str  # pending | started | done | failed | skipped
    duration_s: float = 0.0  # incubations: the planned time in the incubator
    started_s: float | None = None  # incubations: when the plate went in
    finished_s: float | None = None

    @property
    def resource(self) -> str:
        return RESOURCE_OF_STEP.get(self.kind, "liquid_handler")

    @property
    def finished(self) -> bool:
        return self.status in ("done", "skipped")


@dataclass(frozen=True)
class PlateView:
    """One plate (round) in flight: its ledger status and its steps."""

    round_id: int
    index: int
    status: str  # the Round's status: proposed | approved | compiled | executing | ...
    steps: tuple[StepView, ...] = ()
    waiting_for_person: bool = False

    def next_step(self) -> StepView | None:
        return next((s for s in self.steps if not s.finished), None)

    @property
    def incubation(self) -> StepView | None:
        """The incubation step that is under way (started, not finished)."""
        st = self.next_step()
        return st if st is not None and st.kind == "incubate" and st.status != "pending" else None

    def due_s(self) -> float | None:
        """When the plate's current incubation ends (campaign clock, s)."""
        inc = self.incubation
        return None if inc is None or inc.started_s is None else inc.started_s + inc.duration_s

    def in_incubator(self) -> bool:
        return self.incubation is not None

    def place(self, now_s: float) -> Place:
        if self.status == "proposed":
            return Place.WAITING_FOR_APPROVAL
        if self.status == "approved":
            return Place.APPROVED
        if self.status == "analyzed":
            return Place.ANALYSED
        if self.status == "deciding":
            return Place.DECIDING
        st = self.next_step()
        if st is None:
            return Place.ANALYSING
        if st.kind == "incubate":
            return Place.INCUBATING if st.status != "pending" else Place.WAITING_FOR_INCUBATOR
        if st.resource == "microscope":
            return Place.IMAGING
        started = any(s.finished or s.status != "pending" for s in self.steps)
        return Place.DISPENSING if started else Place.COMPILED


@dataclass(frozen=True)
class WorkcellLimits:
    """Capacities and tolerances (the campaign file's ``workcell`` section)."""

    max_plates_in_flight: int = 1
    incubator_slots: int = 1
    read_tolerance_s: float = 3600.0


@dataclass(frozen=True)
class Action:
    """What the runner does next.

    ``kind``: ``image`` | ``end_incubation`` | ``analyse`` | ``decide`` | ``start_incubation`` | ``dispense`` |
    ``compile`` | ``approve`` | ``propose`` | ``wait`` | ``poll`` | ``done``.
    ``round_id`` names the plate; ``until_s`` is the clock time a ``wait`` lasts to;
    ``late_s`` is how late an ``end_incubation`` is beyond the tolerance (0 if on time).
    """

    kind: str
    round_id: int | None = None
    until_s: float | None = None
    late_s: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


def _segment_started(plate: PlateView, resource: str) -> bool:
    """True when some step of the plate's current ``resource`` segment has begun."""
    st = plate.next_step()
    if st is None or st.resource != resource:
        return False
    i = plate.steps.index(st)
    j = i
    while j > 0 and plate.steps[j - 1].resource == resource:
        j -= 1
    return any(s.status != "pending" for s in plate.steps[j : i + 1])


def next_action(
    plates: Sequence[PlateView],
    now_s: float,
    limits: WorkcellLimits,
    *,
    can_propose: bool,
) -> Action:
    """The most urgent thing the workcell can do now (see the module docstring).

    Args:
        plates: the plates in flight (not yet analysed, failed or skipped), any order.
        now_s: the campaign clock.
        limits: capacities and tolerances.
        can_propose: the budget allows another plate.
    """
    plates = sorted(plates, key=lambda p: p.index)
    in_steps = [p for p in plates if p.status in ("compiled", "executing")]

    for p in in_steps:  # 1. reads that are due
        st = p.next_step()
        if st is not None and st.resource == "microscope":
            return Action("image", p.round_id)
    for p in in_steps:  # 2. incubations that have ended
        due = p.due_s()
        if due is not None and now_s >= due:
            return Action(
                "end_incubation", p.round_id, late_s=max(0.0, now_s - due - limits.read_tolerance_s)
            )
    for p in in_steps:  # 3. plates ready to analyse
        if p.next_step() is None:
            return Action("analyse", p.round_id)
    for p in plates:  # 3b. a time-course plate's next decision (through the gate)
        if p.status == "deciding" and not p.waiting_for_person:
            return Action("decide", p.round_id)
    occupied = sum(p.in_incubator() for p in in_steps)
    for p in in_steps:  # 4. a pipetted plate goes into the incubator
        st = p.next_step()
        if (
            st is not None
            and st.kind == "incubate"
            and st.status == "pending"
            and occupied < limits.incubator_slots
        ):
            return Action("start_incubation", p.round_id)
    for p in in_steps:  # 5. finish the handler's work in hand
        if _segment_started(p, "liquid_handler"):
            return Action("dispense", p.round_id)
    # 6. a new plate is pipetted only if a slot will be free when it is done
    committed = occupied + sum(
        1
        for p in in_steps
        if (st := p.next_step()) is not None and st.kind == "incubate" and st.status == "pending"
    )
    for p in in_steps:
        st = p.next_step()
        if (
            st is not None
            and st.resource == "liquid_handler"
            and committed < limits.incubator_slots
        ):
            return Action("dispense", p.round_id)
    for p in plates:  # 7. the gate and the compiler
        if p.status == "approved":
            return Action("compile", p.round_id)
    for p in plates:
        if p.status == "proposed" and not p.waiting_for_person:
            return Action("approve", p.round_id)
    waiting = [p for p in plates if p.status in ("proposed", "deciding")]
    if can_propose and not waiting and len(plates) < limits.max_plates_in_flight:  # 8.
        return Action("propose")
    if not plates:
        return Action("done")
    dues = [d for p in in_steps if (d := p.due_s()) is not None]
    if waiting:  # someone must decide: look again soon, whatever the clock
        return Action("poll", waiting[0].round_id, until_s=min(dues) if dues else None)
    if dues:
        return Action("wait", until_s=min(dues))
    return Action("poll")  # 9. e.g. plates that wait for a slot held by a stuck plate


def step_view(step: Any) -> StepView:
    """A journaled ledger step (``controller.ledger.models.Step``) as the scheduler sees it."""
    result = step.result or {}
    return StepView(
        seq=step.seq,
        kind=step.kind,
        status=step.status,
        duration_s=float(step.payload.get("duration_s", 0.0)) if step.kind == "incubate" else 0.0,
        started_s=result.get("incubation_started_s"),
        finished_s=step.finished_clock_s,
    )


def workcell_limits(spec: Any) -> WorkcellLimits:
    """The limits a campaign file's ``workcell`` section sets."""
    w = spec.workcell
    return WorkcellLimits(
        max_plates_in_flight=w.max_plates_in_flight,
        incubator_slots=w.incubator_slots or w.max_plates_in_flight,
        read_tolerance_s=w.read_tolerance_h * 3600.0,
    )


@dataclass(frozen=True)
class Segment:
    """A stretch of one plate on one resource (for the timeline): campaign clock seconds."""

    plate: str
    resource: str
    start_s: float
    end_s: float | None  # None: still under way


def plate_segments(plate: str, steps: Sequence[Any]) -> list[Segment]:
    """Group a plate's journaled steps (ledger ``Step`` rows, in order) into segments."""
    out: list[Segment] = []
    run: list[Any] = []

    def close() -> None:
        if not run:
            return
        resource = RESOURCE_OF_STEP.get(run[0].kind, "liquid_handler")
        if resource == "incubator":
            res = run[0].result or {}
            start, end = res.get("incubation_started_s"), res.get("incubation_ended_s")
        else:
            starts = [s.started_clock_s for s in run if s.started_clock_s is not None]
            ends = [s.finished_clock_s for s in run if s.finished_clock_s is not None]
            start = min(starts) if starts else None
            end = max(ends) if ends and all(s.status in ("done", "skipped") for s in run) else None
        if start is not None:
            out.append(Segment(plate, resource, float(start), None if end is None else float(end)))

    for step in steps:
        if run and RESOURCE_OF_STEP.get(step.kind) != RESOURCE_OF_STEP.get(run[-1].kind):
            close()
            run = []
        run.append(step)
    close()
    for step in steps:  # a plate mover's transfers end where the step they served begins
        res = step.result or {}
        arrived = res.get("incubation_started_s", step.started_clock_s)
        if res.get("transfer_s") and arrived is not None:
            t = float(arrived)
            out.append(Segment(plate, "plate_mover", t - float(res["transfer_s"]), t))
    return out


def schedule_summary(
    timeline: Sequence[dict[str, Any]], now_h: float | None = None
) -> dict[str, float] | None:
    """Elapsed campaign hours, the hours one plate at a time would have taken (the sum of each
    plate's own span), and the days saved. None without a timeline."""
    if not timeline:
        return None
    spans: dict[str, list[float]] = {}
    for seg in timeline:
        end = (
            seg["end_h"]
            if seg["end_h"] is not None
            else (now_h if now_h is not None else seg["start_h"])
        )
        lo, hi = spans.get(seg["plate"], [seg["start_h"], end])
        spans[seg["plate"]] = [min(lo, seg["start_h"]), max(hi, end)]
    elapsed = max(hi for _, hi in spans.values()) - min(lo for lo, _ in spans.values())
    sequential = sum(hi - lo for lo, hi in spans.values())
    return {
        "elapsed_h": round(elapsed, 2),
        "one_plate_at_a_time_h": round(sequential, 2),
        "saved_days": round((sequential - elapsed) / 24.0, 2),
        "plates": len(spans),
    }
