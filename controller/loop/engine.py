"""The step engine (:class:`StepEngine`): runs one compiled plate's steps on instruments, journaling before and after.

Journal contract (DESIGN.md): a step is written ``started`` before the instrument is called and
``done`` (with its result) after. A step found ``started`` (or ``failed``) when the engine
starts is *uncertain*, and is resolved, never blindly repeated:

=============  ==============================================================================
step kind      resolution of an uncertain step
=============  ==============================================================================
aspirate       drop the tip's contents, aspirate again (a reservoir loses a few µL, no well)
dispense       ask the handler for the well's volume: equal to before + volume → done;
               equal to before → drop the tip, aspirate again, dispense; anything else, or a
               handler that cannot measure → quarantine the well (never dispense twice)
withdraw       likewise: before − volume → done; before → withdraw; else quarantine
mix            repeat (mixing twice changes nothing)
incubate       wait only the remaining time (start time is journaled)
acquire        repeat (imaging is non-destructive; files are overwritten)
=============  ==============================================================================

After a restart the tip's contents are unknown, so the first dispense whose aspirate ran in an
earlier process is preceded by a fresh aspirate. Steps on quarantined wells are skipped.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from sqlalchemy import Engine as DatabaseEngine
from sqlmodel import Session, col, select

from controller.ledger.models import (
    Campaign,
    RawData,
    Round,
    Step,
    StepStatus,
    Well,
    WellStatus,
)
from controller.loop import failpoints
from controller.loop.clocks import Interrupted
from controller.loop.events import EventBus, EventKind, append_event
from controller.loop.workcell import RESOURCE_OF_STEP
from instruments.exceptions import InstrumentError
from instruments.interfaces import (
    ONE_PLATE_PLACES,
    Clock,
    Frame,
    LiquidHandler,
    Microscope,
    PlateMover,
)
from protocols.steps import STEP_ADAPTER, Acquire, Aspirate, Dispense, Incubate, Mix, Withdraw

VOLUME_TOL_UL = 0.05


class PauseRequested(Exception):
    """An operator (or a signal) asked to pause; the engine stopped at a step boundary."""


class StepFailed(Exception):
    """An instrument raised during a step; the campaign pauses with the journal intact."""

    def __init__(self, step: Step, error: InstrumentError) -> None:
        self.step_seq = step.seq
        self.kind = step.kind
        self.error = error
        super().__init__(f"step {step.seq} ({step.kind} {', '.join(step.wells)}) failed: {error}")


@dataclass
class RoundContext:
    campaign_id: int
    round_id: int
    plate_id: str
    image_dir: Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_well_images(path: Path, frames: list[Frame]) -> dict[str, Any]:
    """Write one well's fields as a multi-series OME-TIFF; return metadata for the ledger."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    with tifffile.TiffWriter(tmp, ome=True) as tif:
        for fr in frames:
            n = len(fr.channels)
            tif.write(
                np.ascontiguousarray(fr.image),
                photometric="minisblack",
                # deflate at level 1: as small as the default level on noisy fields, ~6x faster
                # to write, and every TIFF reader opens it (zstd TIFFs are not yet universal)
                compression="zlib",
                compressionargs={"level": 1},
                metadata={
                    "axes": "CYX",
                    "Name": f"{fr.plate}_{fr.well}_field{fr.field}",
                    "Channel": {"Name": list(fr.channels)},
                    "PhysicalSizeX": fr.pixel_size_um,
                    "PhysicalSizeY": fr.pixel_size_um,
                    "PhysicalSizeXUnit": "µm",
                    "PhysicalSizeYUnit": "µm",
                    # one OME Plane per channel: stage position of the field and campaign time
                    "Plane": {
                        "PositionX": [float(fr.position_um[0])] * n,
                        "PositionY": [float(fr.position_um[1])] * n,
                        "PositionXUnit": ["µm"] * n,
                        "PositionYUnit": ["µm"] * n,
                        "DeltaT": [float(fr.timestamp_s)] * n,
                        "DeltaTUnit": ["s"] * n,
                    },
                },
            )
    tmp.replace(path)
    return {
        "fields": [
            {
                "field": fr.field,
                "position_um": list(fr.position_um),
                "timestamp_s": fr.timestamp_s,
            }
            for fr in frames
        ],
        "channels": list(frames[0].channels) if frames else [],
        "pixel_size_um": frames[0].pixel_size_um if frames else None,
        "shape": list(frames[0].image.shape) if frames else [],
    }


def read_well_images(raw: RawData) -> list[Frame]:
    """Load the frames of one well back from its OME-TIFF (what the analyzer is given)."""
    frames = []
    with tifffile.TiffFile(raw.path) as tif:
        for i, series in enumerate(tif.series):
            f = raw.meta["fields"][i]
            frames.append(
                Frame(
                    image=series.asarray(),
                    channels=tuple(raw.meta["channels"]),
                    plate=raw.plate_id,
                    well=raw.well,
                    field=f["field"],
                    pixel_size_um=raw.meta["pixel_size_um"],
                    position_um=tuple(f["position_um"]),
                    timestamp_s=f["timestamp_s"],
                )
            )
    return frames


class StepEngine:
    """Executes the journaled steps of one round against the instruments."""

    def __init__(
        self,
        db: DatabaseEngine,
        liquid_handler: LiquidHandler,
        microscope: Microscope,
        clock: Clock,
        bus: EventBus,
        stop: threading.Event,
        should_stop=lambda: False,
        plate_mover: PlateMover | None = None,
    ) -> None:
        self.db = db
        self.mover = plate_mover  # None: plates are carried by hand, in no campaign time
        self.lh = liquid_handler
        self.microscope = microscope
        self.clock = clock
        self.bus = bus
        self.stop = stop
        self.should_stop = should_stop  # an operator's pause/abort request, polled between steps
        self._tip_known = False  # an aspirate ran in this process since the last dispense
        self._unpublished: list[tuple[str, dict[str, Any]]] = []  # marks not yet committed

    # -- journal -----------------------------------------------------------------------------

    def _save(self, session: Session, step: Step, campaign_id: int, commit: bool = True) -> None:
        session.add(step)
        if commit:
            self._flush(session, campaign_id)

    def _flush(self, session: Session, campaign_id: int) -> None:
        """Commit the journal with the campaign's clock, and only then tell subscribers what
        it now holds."""
        with session.no_autoflush:  # one flush, at the commit, for the steps and the clock
            camp = session.get(Campaign, campaign_id)
        camp.clock_s = self.clock.now()
        session.add(camp)
        session.commit()
        events, self._unpublished = self._unpublished, []
        for kind, payload in events:
            self.bus.publish(kind, payload)

    def _mark(self, session: Session, ctx: RoundContext, step: Step, status: StepStatus,
              result: dict[str, Any] | None = None, commit: bool = True) -> None:
        """Journal a step's new status. ``commit=False`` (a step done) rides on the next
        commit, the next step's ``started`` or the segment's end: one commit per step instead
        of two, and a crash in between leaves the step ``started``, which recovery handles as
        it does a crash just after the instrument call."""
        now = self.clock.now()
        step.status = status.value
        if status == StepStatus.STARTED:
            step.attempts += 1
            step.started_clock_s = now
            step.finished_clock_s = None
        else:
            step.finished_clock_s = now
        if result is not None:
            step.result = {**(step.result or {}), **result}
        if status in (StepStatus.FAILED,):
            append_event(session, ctx.campaign_id, EventKind.STEP_FAILED,
                         {"round_id": ctx.round_id, "seq": step.seq, "kind": step.kind,
                          "wells": step.wells, **(result or {})}, clock_s=now)
        kind = {StepStatus.STARTED: EventKind.STEP_STARTED, StepStatus.DONE: EventKind.STEP_DONE}.get(status)
        if kind:
            self._unpublished.append((kind, {"round_id": ctx.round_id, "seq": step.seq, "kind": step.kind}))
        self._save(session, step, ctx.campaign_id, commit)

    # -- main loop ---------------------------------------------------------------------------

    def run_round(self, ctx: RoundContext) -> None:
        """Run every step of the round not yet done, incubations included (one plate at a
        time); raises PauseRequested or StepFailed."""
        while True:
            kind = self.run_segment(ctx, stop_at_incubation=False)
            if kind is None:
                return

    def run_segment(self, ctx: RoundContext, *, stop_at_incubation: bool = True) -> str | None:
        """Run the round's pending steps that need the same instrument as the first of them.

        Returns the kind of the step it stopped at (a step on another instrument, or an
        incubation when ``stop_at_incubation``), or None when every step is done. Raises
        PauseRequested or StepFailed.
        """
        with Session(self.db, expire_on_commit=False) as session:
            try:
                return self._segment(session, ctx, stop_at_incubation)
            finally:
                self._flush(session, ctx.campaign_id)  # the last step's ``done``, also when pausing

    def _segment(self, session: Session, ctx: RoundContext, stop_at_incubation: bool) -> str | None:
        steps = list(session.exec(select(Step).where(Step.round_id == ctx.round_id).order_by(col(Step.seq))))
        wells = {w.well: w for w in session.exec(select(Well).where(Well.round_id == ctx.round_id))}
        resource: str | None = None
        i = 0
        while i < len(steps):
            step = steps[i]
            if step.status in (StepStatus.DONE.value, StepStatus.SKIPPED.value):
                i += 1
                continue
            here = RESOURCE_OF_STEP.get(step.kind, "liquid_handler")
            if resource is None:
                resource = here
            if here != resource or (stop_at_incubation and step.kind == "incubate"):
                return step.kind
            if self.stop.is_set() or self.should_stop():
                raise PauseRequested("pause requested")
            if any(wells[w].status == WellStatus.QUARANTINED.value
                   for w in self._target_wells(steps, i) if w in wells):
                self._mark(session, ctx, step, StepStatus.SKIPPED, {"resolution": "well quarantined"})
                i += 1
                continue
            if step.status in (StepStatus.STARTED.value, StepStatus.FAILED.value):
                i = self._recover(session, ctx, steps, i, wells)
                continue
            if step.kind == "dispense" and not self._tip_known:
                # Tip contents unknown after a restart: refill from the journaled aspirate.
                j = self._aspirate_index(steps, i)
                if j is not None and steps[j].status == StepStatus.DONE.value:
                    self.lh.discard_tip()
                    self._mark(session, ctx, steps[j], StepStatus.PENDING,
                               {"resolution": "re-aspirated after restart"})
                    i = j
                    continue
            self._execute(session, ctx, step)
            i += 1
        return None

    def start_incubation(self, ctx: RoundContext) -> float:
        """Put the plate in the incubator: journal its pending incubation ``started`` with the
        time; returns when it is due out (campaign clock, s)."""
        with Session(self.db, expire_on_commit=False) as session:
            step = self._incubation(session, ctx)
            moved = self._bring(session, ctx, step, "incubator")
            started = self.clock.now()
            self._mark(session, ctx, step, StepStatus.STARTED, {"incubation_started_s": started, **moved})
            failpoints.hit("step_started", "incubate")
            return started + float(step.payload["duration_s"])

    def end_incubation(self, ctx: RoundContext, late_s: float = 0.0) -> None:
        """Take the plate out: journal its incubation ``done``; a late read is recorded with
        how late it is beyond the tolerance."""
        with Session(self.db, expire_on_commit=False) as session:
            step = self._incubation(session, ctx)
            now = self.clock.now()
            result = {"incubation_ended_s": now, "late_s": late_s}
            if late_s > 0:
                append_event(session, ctx.campaign_id, EventKind.READ_LATE,
                             {"round_id": ctx.round_id, "plate": ctx.plate_id, "late_h": round(late_s / 3600, 3)},
                             clock_s=now)
            self._mark(session, ctx, step, StepStatus.DONE, result)
        if late_s > 0:
            self.bus.publish(EventKind.READ_LATE, {"plate": ctx.plate_id, "late_h": round(late_s / 3600, 3)})

    @staticmethod
    def _incubation(session: Session, ctx: RoundContext) -> Step:
        steps = session.exec(select(Step).where(Step.round_id == ctx.round_id).order_by(col(Step.seq)))
        step = next((s for s in steps if s.status not in (StepStatus.DONE.value, StepStatus.SKIPPED.value)), None)
        if step is None or step.kind != "incubate":
            raise RuntimeError(f"round {ctx.round_id}: the next step is not an incubation")
        return step

    @staticmethod
    def _target_wells(steps: list[Step], i: int) -> list[str]:
        """Wells a step affects: an aspirate affects the wells its liquid is dispensed into."""
        if steps[i].kind != "aspirate":
            return steps[i].wells
        out: list[str] = []
        for st in steps[i + 1:]:
            if st.kind != "dispense":
                break
            out += st.wells
        return out

    @staticmethod
    def _aspirate_index(steps: list[Step], i: int) -> int | None:
        j = i - 1
        while j >= 0 and steps[j].kind != "aspirate":
            if steps[j].kind == "dispense":
                return None  # tip already used by an earlier dispense of the same aspirate
            j -= 1
        return j if j >= 0 else None

    def _bring(self, session: Session, ctx: RoundContext, step: Step, place: str) -> dict[str, Any]:
        """Have the plate mover carry the plate to ``place`` for ``step`` (a one-plate place is
        cleared into the hotel first); what moved, for the step's journal entry. A no-op when
        the plate is there already (so a resumed step asks again safely) or there is no mover.
        A mover's fault fails the step (the campaign pauses, the plate where the mover left it)."""
        mover = self.mover
        if mover is None or mover.location(ctx.plate_id) == place:
            return {}
        t0 = self.clock.now()
        moved: dict[str, Any] = {}
        try:
            if place in ONE_PLATE_PLACES:
                other = mover.occupant(place)
                if other is not None and other != ctx.plate_id:
                    mover.move_plate(other, "hotel")
                    moved["cleared"] = other
            moved["moved_from"] = mover.location(ctx.plate_id)
            mover.move_plate(ctx.plate_id, place)
        except InstrumentError as err:
            self._mark(session, ctx, step, StepStatus.FAILED, {
                "error": str(err), "error_type": type(err).__name__, "moving_to": place})
            raise StepFailed(step, err) from err
        return {**moved, "moved_to": place, "transfer_s": round(self.clock.now() - t0, 3)}

    def _execute(self, session: Session, ctx: RoundContext, step: Step) -> None:
        spec = STEP_ADAPTER.validate_python(step.payload)
        started: dict[str, Any] = self._bring(session, ctx, step, RESOURCE_OF_STEP.get(step.kind, "liquid_handler"))
        if isinstance(spec, Dispense | Withdraw):
            started["volume_before_ul"] = self.lh.well_volume_ul(spec.plate, spec.well)
        elif isinstance(spec, Incubate):
            # A resumed incubation keeps its original start: only the remaining time is waited.
            started["incubation_started_s"] = (step.result or {}).get(
                "incubation_started_s", self.clock.now()
            )
        self._mark(session, ctx, step, StepStatus.STARTED, started)
        failpoints.hit("step_started", step.kind)
        try:
            result = self._call(session, ctx, step, spec)
        except Interrupted:
            raise PauseRequested("pause requested during a wait") from None
        except InstrumentError as err:
            self._mark(session, ctx, step, StepStatus.FAILED,
                       {"error": str(err), "error_type": type(err).__name__})
            raise StepFailed(step, err) from err
        failpoints.hit("step_executed", step.kind)
        self._mark(session, ctx, step, StepStatus.DONE, result, commit=False)

    def _call(self, session: Session, ctx: RoundContext, step: Step, spec: Any) -> dict[str, Any]:
        if isinstance(spec, Aspirate):
            self.lh.aspirate(spec.source, spec.reagent, spec.stock_concentration_um, spec.volume_ul)
            self._tip_known = True
            return {}
        if isinstance(spec, Dispense):
            self.lh.dispense(spec.plate, spec.well, spec.volume_ul)
            return {"volume_after_ul": self.lh.well_volume_ul(spec.plate, spec.well)}
        if isinstance(spec, Mix):
            self.lh.mix(spec.plate, spec.well, spec.volume_ul, spec.cycles)
            return {}
        if isinstance(spec, Withdraw):
            withdraw = getattr(self.lh, "withdraw", None)
            if withdraw is None:  # checked before the campaign starts; a plugin may still lack it
                raise InstrumentError(f"the liquid handler {type(self.lh).__name__} cannot withdraw")
            withdraw(spec.plate, spec.well, spec.volume_ul)
            return {"volume_after_ul": self.lh.well_volume_ul(spec.plate, spec.well)}
        if isinstance(spec, Incubate):
            started = (step.result or {}).get("incubation_started_s", self.clock.now())
            self.clock.sleep(max(0.0, started + spec.duration_s - self.clock.now()))
            return {}
        if isinstance(spec, Acquire):
            return self._acquire(session, ctx, spec, step.time_point)
        raise TypeError(f"no handler for step kind {step.kind!r}")  # pragma: no cover

    def _acquire(self, session: Session, ctx: RoundContext, spec: Acquire,
                 time_point: int | None = None) -> dict[str, Any]:
        frames = self.microscope.acquire_well(
            spec.plate, spec.well, spec.channels, spec.fields, spec.exposure_ms
        )
        # a time-course plate keeps every time point's images
        tp = "" if time_point is None else f"_t{time_point:02d}"
        path = ctx.image_dir / f"{spec.plate}_{spec.well}{tp}.ome.tif"
        meta = write_well_images(path, frames)
        digest = sha256_file(path)
        old = session.exec(
            select(RawData).where(RawData.round_id == ctx.round_id, RawData.well == spec.well,
                                  RawData.time_point == time_point)
        ).first()
        if old is not None:
            session.delete(old)
        session.add(RawData(round_id=ctx.round_id, plate_id=spec.plate, well=spec.well,
                            path=str(path), sha256=digest, size_bytes=path.stat().st_size, meta=meta,
                            time_point=time_point))
        self.bus.publish(EventKind.IMAGE_ACQUIRED, {"round_id": ctx.round_id, "well": spec.well})
        return {"path": str(path), "sha256": digest, "frames": len(frames)}

    # -- recovery ----------------------------------------------------------------------------

    def _recover(self, session: Session, ctx: RoundContext, steps: list[Step], i: int,
                 wells: dict[str, Well]) -> int:
        step = steps[i]
        kind = step.kind
        if kind in ("dispense", "withdraw"):
            return self._recover_dispense(session, ctx, steps, i, wells)
        if kind == "aspirate":
            self.lh.discard_tip()
            resolution = "tip dropped; aspirating again"
        elif kind == "incubate":
            resolution = "waiting the remaining incubation time"
        else:
            resolution = f"{kind} repeated (harmless to repeat)"
        self._recovered(session, ctx, step, resolution)
        step.status = StepStatus.PENDING.value
        return i

    def _recovered(self, session: Session, ctx: RoundContext, step: Step, resolution: str) -> None:
        append_event(session, ctx.campaign_id, EventKind.STEP_RECOVERED,
                     {"round_id": ctx.round_id, "seq": step.seq, "kind": step.kind,
                      "wells": step.wells, "resolution": resolution}, clock_s=self.clock.now())
        step.result = {**(step.result or {}), "resolution": resolution}
        self._save(session, step, ctx.campaign_id)

    def _recover_dispense(self, session: Session, ctx: RoundContext, steps: list[Step], i: int,
                          wells: dict[str, Well]) -> int:
        step = steps[i]
        spec = STEP_ADAPTER.validate_python(step.payload)
        before = (step.result or {}).get("volume_before_ul")
        now = self.lh.well_volume_ul(spec.plate, spec.well)
        sign = -1.0 if step.kind == "withdraw" else 1.0  # a withdrawal lowers the volume
        if before is not None and now is not None:
            if abs(now - (before + sign * spec.volume_ul)) <= VOLUME_TOL_UL:
                self._recovered(session, ctx, step, f"{step.kind} confirmed by the handler ({now:.2f} µL)")
                self._mark(session, ctx, step, StepStatus.DONE, {"volume_after_ul": now})
                return i + 1
            if abs(now - before) <= VOLUME_TOL_UL:
                if step.kind == "withdraw":
                    self._recovered(session, ctx, step, "withdrawal had not happened; withdrawing")
                    step.status = StepStatus.PENDING.value
                    return i
                self.lh.discard_tip()
                self._recovered(session, ctx, step, "dispense had not happened; aspirating again")
                step.status = StepStatus.PENDING.value
                j = self._aspirate_index(steps, i)
                if j is not None:
                    steps[j].status = StepStatus.PENDING.value
                    self._save(session, steps[j], ctx.campaign_id)
                    return j
                return i
            reason = f"well holds {now:.2f} µL, neither {before:.2f} nor {before + sign * spec.volume_ul:.2f}"
        else:
            reason = f"the handler cannot measure the well, so the {step.kind} is uncertain"
        self.lh.discard_tip()
        self._quarantine(session, ctx, wells[spec.well], reason)
        self._mark(session, ctx, step, StepStatus.SKIPPED, {"resolution": f"quarantined: {reason}"})
        return i + 1

    def _quarantine(self, session: Session, ctx: RoundContext, well: Well, reason: str) -> None:
        well.status = WellStatus.QUARANTINED.value
        well.quarantine_reason = reason
        session.add(well)
        append_event(session, ctx.campaign_id, EventKind.WELL_QUARANTINED,
                     {"round_id": ctx.round_id, "well": well.well, "reason": reason},
                     clock_s=self.clock.now())
        session.commit()
        self.bus.publish(EventKind.WELL_QUARANTINED, {"well": well.well, "reason": reason})


def load_round_context(db: DatabaseEngine, round_id: int, data_dir: Path) -> RoundContext:
    with Session(db) as s:
        r = s.get(Round, round_id)
        return RoundContext(r.campaign_id, r.id, r.plate_id, data_dir / "images" / f"round_{r.index:02d}")
