"""A simulated single-channel liquid handler over a :class:`~simulators.world.SimulatedLab`.

It implements :class:`instruments.interfaces.LiquidHandler`: every operation is checked against
the physical limits (tip capacity, minimum volume, well capacity, well names) *before* anything
moves, raises :class:`~instruments.exceptions.LiquidHandlingError` when impossible, and takes
simulated time on the injected clock.
"""

from __future__ import annotations

from typing import Any

from instruments.exceptions import LiquidHandlingError
from instruments.interfaces import Clock
from simulators.world import SimulatedLab, UnknownWellError

_EPS_UL = 1e-6


class SimulatedLiquidHandler:
    """One pipetting channel with a reusable tip, moving stocks into simulated plates.

    Args:
        lab: the simulated lab whose plates and tip this handler moves liquid in.
        clock: the clock each operation advances (``seconds_per_operation`` per call).
        tip_capacity_ul: most the tip can hold (µL).
        min_volume_ul: smallest volume the channel can aspirate or dispense (µL).
        reports_volumes: whether ``well_volume_ul`` answers (liquid-level detection);
            False makes it return None, like a handler without it.
        seconds_per_operation: simulated duration of one aspirate / dispense (s).
    """

    def __init__(
        self,
        lab: SimulatedLab,
        clock: Clock,
        *,
        tip_capacity_ul: float = 50.0,
        min_volume_ul: float = 0.5,
        reports_volumes: bool = True,
        seconds_per_operation: float = 4.0,
    ) -> None:
        self.lab = lab
        self.clock = clock
        self.tip_capacity_ul = float(tip_capacity_ul)
        self.min_volume_ul = float(min_volume_ul)
        self.reports_volumes = reports_volumes
        self.seconds_per_operation = float(seconds_per_operation)
        self.operations = 0

    # ------------------------------------------------------------------------------ checks

    def _check_volume(self, volume_ul: float, what: str) -> None:
        if not volume_ul == volume_ul or volume_ul <= 0:  # NaN or non-positive
            raise LiquidHandlingError(f"{what}: volume must be positive (got {volume_ul} µL)")
        if volume_ul < self.min_volume_ul - _EPS_UL:
            raise LiquidHandlingError(
                f"{what}: {volume_ul:g} µL is below the minimum volume of {self.min_volume_ul:g} µL"
            )

    def _well(self, plate: str, well: str) -> str:
        try:
            return self.lab.canonical_well(plate, well)
        except UnknownWellError as exc:
            raise LiquidHandlingError(str(exc)) from exc

    def _tick(self, seconds: float) -> None:
        self.operations += 1
        self.clock.sleep(seconds)

    # ------------------------------------------------------------------------- operations

    def aspirate(
        self, source: str, reagent: str, stock_concentration_um: float, volume_ul: float
    ) -> None:
        """Draw ``volume_ul`` of ``reagent`` (stock ``stock_concentration_um`` µM) from ``source``.

        Raises:
            LiquidHandlingError: below the minimum volume, a negative concentration, or more
                than the tip has room for.
        """
        self._check_volume(volume_ul, f"aspirate from {source!r}")
        if stock_concentration_um < 0:
            raise LiquidHandlingError(
                f"aspirate from {source!r}: negative stock concentration {stock_concentration_um}"
            )
        held = self.lab.tip.volume_ul
        if held + volume_ul > self.tip_capacity_ul + _EPS_UL:
            raise LiquidHandlingError(
                f"aspirate from {source!r}: {volume_ul:g} µL does not fit; the tip holds "
                f"{held:g} of {self.tip_capacity_ul:g} µL"
            )
        self.lab.aspirate_into_tip(source, reagent, stock_concentration_um, volume_ul)
        self._tick(self.seconds_per_operation)

    def dispense(self, plate: str, well: str, volume_ul: float) -> None:
        """Dispense ``volume_ul`` of the tip's contents into ``well`` of ``plate``.

        Raises:
            LiquidHandlingError: unknown well, below the minimum volume, more than the tip
                holds, or more than the well has room for.
        """
        well = self._well(plate, well)
        self._check_volume(volume_ul, f"dispense into {plate}:{well}")
        held = self.lab.tip.volume_ul
        if volume_ul > held + _EPS_UL:
            raise LiquidHandlingError(
                f"dispense into {plate}:{well}: {volume_ul:g} µL requested, the tip holds {held:g} µL"
            )
        ptype = self.lab.plate_type(plate)
        in_well = self.lab.well_volume_ul(plate, well)
        if in_well + volume_ul > ptype.max_volume_ul + _EPS_UL:
            raise LiquidHandlingError(
                f"dispense into {plate}:{well}: {in_well:g} + {volume_ul:g} µL overflows the "
                f"{ptype.max_volume_ul:g} µL well"
            )
        self.lab.dispense_from_tip(plate, well, min(volume_ul, held), self.clock.now())
        self._tick(self.seconds_per_operation)

    def mix(self, plate: str, well: str, volume_ul: float, cycles: int) -> None:
        """Pipette ``volume_ul`` up and down ``cycles`` times (contents are already well mixed).

        Raises:
            LiquidHandlingError: unknown well, bad cycles, a volume below the minimum, above
                the tip's free capacity, or above what the well holds.
        """
        well = self._well(plate, well)
        self._check_volume(volume_ul, f"mix in {plate}:{well}")
        if cycles < 1:
            raise LiquidHandlingError(f"mix in {plate}:{well}: cycles must be >= 1 (got {cycles})")
        free = self.tip_capacity_ul - self.lab.tip.volume_ul
        if volume_ul > free + _EPS_UL:
            raise LiquidHandlingError(
                f"mix in {plate}:{well}: {volume_ul:g} µL exceeds the tip's free {free:g} µL"
            )
        in_well = self.lab.well_volume_ul(plate, well)
        if volume_ul > in_well + _EPS_UL:
            raise LiquidHandlingError(
                f"mix in {plate}:{well}: {volume_ul:g} µL exceeds the {in_well:g} µL in the well"
            )
        self._tick(self.seconds_per_operation * 0.5 * cycles)

    def withdraw(self, plate: str, well: str, volume_ul: float) -> None:
        """Remove ``volume_ul`` of medium from ``well`` to waste (half of a medium exchange).

        Raises:
            LiquidHandlingError: unknown well, below the minimum volume, more than the tip
                holds or the well contains, or a lab that cannot withdraw liquid
                (only :class:`~simulators.timecourse_lab.TimecourseLab` can).
        """
        well = self._well(plate, well)
        self._check_volume(volume_ul, f"withdraw from {plate}:{well}")
        if volume_ul > self.tip_capacity_ul + _EPS_UL:
            raise LiquidHandlingError(
                f"withdraw from {plate}:{well}: {volume_ul:g} µL exceeds the tip's "
                f"{self.tip_capacity_ul:g} µL"
            )
        in_well = self.lab.well_volume_ul(plate, well)
        if volume_ul > in_well + _EPS_UL:
            raise LiquidHandlingError(
                f"withdraw from {plate}:{well}: {volume_ul:g} µL requested, the well holds "
                f"{in_well:g} µL"
            )
        withdraw = getattr(self.lab, "withdraw_from_well", None)
        if withdraw is None:
            raise LiquidHandlingError(
                f"withdraw from {plate}:{well}: this simulated lab cannot remove liquid from "
                "wells (time-course plates need a TimecourseLab)"
            )
        withdraw(plate, well, volume_ul, self.clock.now())
        self._tick(self.seconds_per_operation)

    def discard_tip(self) -> None:
        """Drop whatever the tip holds."""
        self.lab.discard_tip()
        self._tick(self.seconds_per_operation * 0.5)

    def well_volume_ul(self, plate: str, well: str) -> float | None:
        """The tracked volume of a well (µL), or None when ``reports_volumes`` is False.

        Raises:
            LiquidHandlingError: unknown well.
        """
        well = self._well(plate, well)
        if not self.reports_volumes:
            return None
        return self.lab.well_volume_ul(plate, well)

    def identify(self) -> dict[str, Any]:
        """Identity and state for commissioning."""
        tip = self.lab.tip
        return {
            "model": "cellpilot simulated liquid handler",
            "serial": "SIM-LH-0001",
            "firmware": "sim-1.0",
            "ready": True,
            "simulated": True,
            "channels": 1,
            "tip_capacity_ul": self.tip_capacity_ul,
            "min_volume_ul": self.min_volume_ul,
            "reports_volumes": self.reports_volumes,
            "tip_volume_ul": tip.volume_ul,
            "operations": self.operations,
        }
