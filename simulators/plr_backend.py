"""A PyLabRobot backend that moves simulated liquid in a :class:`~simulators.world.SimulatedLab`.

In a dry-run the real PyLabRobot frontend and cellpilot's
:class:`~instruments.pylabrobot_handler.PLRLiquidHandler` run unchanged; only the backend is
replaced (STYLE.md: a simulator replaces the backend, never the driver). Every aspiration from a
reservoir draws the stock into the simulated lab's tip, every dispense into a plate well moves
the tip's contents into that well, and dropping a tip empties it, so the virtual biology sees the
drugs arrive in the wells.

The backend has one channel (the simulated lab has one tip). What a reservoir holds is told by
:meth:`SimulatedLabBackend.describe_reservoir` (the handler calls it before aspirating, like an
operator labelling a trough). An aspiration from a plate well (mixing) is held aside and must go
back into the same well: the simulated lab does not model well-to-well transfers.

Each operation first advances the injected clock, then moves the liquid, so a wait interrupted
by a pause moves nothing.
"""

from __future__ import annotations

from typing import Any

from pylabrobot.liquid_handling.backends.backend import LiquidHandlerBackend
from pylabrobot.resources import Plate, Tip, Well

from instruments.exceptions import LiquidHandlingError
from instruments.interfaces import Clock
from simulators.world import SimulatedLab, UnknownWellError

_EPS_UL = 1e-6


class SimulatedLabBackend(LiquidHandlerBackend):
    """A one-channel PyLabRobot backend acting on a :class:`SimulatedLab`.

    Args:
        lab: the simulated lab whose reservoirs, tip and plates the liquid moves in.
        clock: the clock each operation advances.
        seconds_per_operation: simulated duration of one aspirate or dispense (s); tip pickups
            and drops take half.
    """

    simulated = True
    firmware_version = "cellpilot-sim-plr-1.0"

    def __init__(
        self, lab: SimulatedLab, clock: Clock, *, seconds_per_operation: float = 4.0
    ) -> None:
        super().__init__()
        self.lab = lab
        self.clock = clock
        self.seconds_per_operation = float(seconds_per_operation)
        self.reservoirs: dict[str, tuple[str, float]] = {}
        self.labels: dict[str, str] = {}  # container -> the protocol's label of its liquid
        self._held_from_well: tuple[str, str, float] | None = None  # (plate, well, µL) when mixing
        self.operations = 0
        self._num_arms = 0

    # ------------------------------------------------------------------------- lifecycle

    async def setup(self) -> None:
        await super().setup()

    async def stop(self) -> None:
        pass

    def serialize(self) -> dict[str, Any]:
        return {**super().serialize(), "seconds_per_operation": self.seconds_per_operation}

    @property
    def num_channels(self) -> int:
        return 1

    def can_pick_up_tip(self, channel_idx: int, tip: Tip) -> bool:
        return channel_idx == 0

    def describe_reservoir(
        self,
        container: str,
        reagent: str,
        stock_concentration_um: float,
        source: str | None = None,
    ) -> None:
        """Tell what reservoir ``container`` holds (``stock_concentration_um`` 0 for vehicle);
        ``source`` is the protocol's label for it, which names its solvent."""
        self.reservoirs[container] = (reagent, float(stock_concentration_um))
        self.labels[container] = source or container

    def _tick(self, seconds: float) -> None:
        self.operations += 1
        self.clock.sleep(seconds)

    # ------------------------------------------------------------------------------- tips

    async def pick_up_tips(self, ops: list[Any], use_channels: list[int], **kwargs: Any) -> None:
        self._tick(self.seconds_per_operation * 0.5)
        if self.lab.tip.volume_ul > _EPS_UL:
            self.lab.discard_tip()  # a fresh tip is clean

    async def drop_tips(self, ops: list[Any], use_channels: list[int], **kwargs: Any) -> None:
        self._tick(self.seconds_per_operation * 0.5)
        self._held_from_well = None
        if self.lab.tip.volume_ul > _EPS_UL or self.lab.tip.amounts_pmol:
            self.lab.discard_tip()

    # ------------------------------------------------------------------------------ liquid

    @staticmethod
    def _plate_well(resource: Any) -> tuple[str, str] | None:
        """``(barcode, "B3")`` for a well of a plate, else None."""
        if isinstance(resource, Well) and isinstance(resource.parent, Plate):
            return resource.parent.name, resource.parent.get_child_identifier(resource)
        return None

    async def aspirate(self, ops: list[Any], use_channels: list[int], **kwargs: Any) -> None:
        self._tick(self.seconds_per_operation)
        for op in ops:
            name = op.resource.name
            if name in self.reservoirs:
                reagent, conc = self.reservoirs[name]
                label = self.labels.get(name, name)
                self.lab.aspirate_into_tip(label, reagent, conc, float(op.volume))
                continue
            where = self._plate_well(op.resource)
            if where is None:
                raise LiquidHandlingError(f"simulated lab: nothing is known about {name!r}")
            if self._held_from_well is not None:
                raise LiquidHandlingError("simulated lab: the tip already holds liquid from a well")
            self._held_from_well = (where[0], where[1], float(op.volume))

    async def dispense(self, ops: list[Any], use_channels: list[int], **kwargs: Any) -> None:
        self._tick(self.seconds_per_operation)
        for op in ops:
            where = self._plate_well(op.resource)
            if where is None:
                raise LiquidHandlingError(
                    f"simulated lab: can only dispense into plate wells, not {op.resource.name!r}"
                )
            plate, well = where
            held = self._held_from_well
            if held is not None:
                if (held[0], held[1]) != (plate, well) or abs(held[2] - op.volume) > _EPS_UL:
                    raise LiquidHandlingError(
                        "simulated lab: liquid aspirated from a well must go back into that well"
                    )
                self._held_from_well = None
                continue
            try:
                self.lab.dispense_from_tip(plate, well, float(op.volume), self.clock.now())
            except UnknownWellError as exc:
                raise LiquidHandlingError(str(exc)) from exc

    # ------------------------------------------------------------- not on this simulated robot

    async def _unsupported(self, *args: Any, **kwargs: Any) -> None:
        raise LiquidHandlingError("the simulated-lab backend has one channel and no 96 head or arm")

    pick_up_tips96 = drop_tips96 = aspirate96 = dispense96 = _unsupported
    pick_up_resource = move_picked_up_resource = drop_resource = _unsupported
