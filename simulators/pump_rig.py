"""A dry-run pump rig: emulated (or external) pumps, a simulated stage and the fluidics.

Two ways to run the real pump driver in a dry-run, with the clock and the virtual lab
simulated either way:

* **built-in**: :func:`start_rig` starts a :class:`~simulators.pump_emulator.PumpEmulator`
  for the rig's pumps, and the fluidics listen to the moves its firmware executes. The
  pumps power up empty in every process, like pumps switched off between runs.
* **external** (``external_port``): the driver talks to someone else's emulator or a bench
  pump on that port; nothing here can see its firmware, so the fluidics listen to the moves
  the driver has confirmed (:meth:`~instruments.pumps.SyringePump.add_move_listener`, wired
  by :meth:`DryRunRig.watch`). Those pumps outlive the process, so the syringes' contents are
  kept in ``<data_dir>/sim_fluidics.json`` with the lines'.

Either way the stage's position (``sim_stage.json``) and the dispensing lines' contents
persist between processes, as they physically would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instruments.interfaces import Clock
from instruments.pumps import SyringePump
from simulators.fluidics import FluidicsBridge, ReagentLine, SimulatedPositioner
from simulators.pump_emulator import FaultConfig, PumpEmulator
from simulators.world import SimulatedLab


@dataclass(frozen=True)
class RigPump:
    """One pump of the rig: model, fitted syringe (µL), valve ports."""

    model: str
    syringe_ul: float
    valve_ports: int


@dataclass
class DryRunRig:
    """What a dry-run of the pump driver runs against."""

    port: str
    positioner: SimulatedPositioner
    bridge: FluidicsBridge
    emulator: PumpEmulator | None = None

    @property
    def external(self) -> bool:
        """True when the pumps are someone else's (the fluidics follow the driver)."""
        return self.emulator is None

    def watch(self, pumps: Mapping[int, SyringePump]) -> None:
        """External pumps: feed the fluidics with the moves the driver confirms."""
        if self.external:
            for pump in pumps.values():
                pump.add_move_listener(self.bridge.on_move)

    def close(self) -> None:
        """Stop the built-in emulator (an external one is left running)."""
        if self.emulator is not None:
            self.emulator.close()

    def stats(self) -> dict[str, Any]:
        """Emulator counters (built-in) and fluidics totals, for ``pump_runs.jsonl``."""
        out: dict[str, Any] = {}
        emulator = self.emulator
        if emulator is not None:
            out["emulator"] = {
                "dropped": emulator.dropped,
                "garbled": emulator.garbled,
                "lost_requests": emulator.lost_requests,
                "motion_s_unscaled": emulator.motion_s,
                "listener_errors": list(emulator.listener_errors),
                "pumps": {
                    address: {
                        "plunger_moves": emulator.pump(address).plunger_moves,
                        "aspirated": emulator.pump(address).aspirated,
                        "dispensed": emulator.pump(address).dispensed,
                        "init_count": emulator.pump(address).init_count,
                    }
                    for address in emulator.addresses
                },
            }
        delivered = self.bridge.delivered
        out["fluidics"] = {
            "external_pumps": self.external,
            "transfers": len(delivered),
            "partial_transfers": sum(d["partial"] for d in delivered),
            "delivered_ul": sum(d["volume_ul"] for d in delivered),
            "wasted_ul": self.bridge.wasted_ul,
            "returned_ul": self.bridge.returned_ul,
            "anomalies": list(self.bridge.anomalies),
        }
        return out


def start_rig(
    lab: SimulatedLab,
    clock: Clock,
    data_dir: Path,
    *,
    pumps: Mapping[int, RigPump],
    lines: Mapping[tuple[int, int | str], ReagentLine],
    output_port: int | str,
    waste_port: int | None = None,
    line_ul: float = 0.0,
    seconds_per_move: float = 0.0,
    external_port: str | None = None,
    time_scale: float = 1.0,
    transport: str = "pty",
    faults: FaultConfig | None = None,
    scheduled: Mapping[str, int | None] | None = None,
    fault_pump: int | None = None,
    init_failure: bool = False,
) -> DryRunRig:
    """Start the pumps (or adopt an external port), the stage and the fluidics.

    Args:
        lab: the run's simulated lab.
        clock: the run's simulated clock.
        data_dir: where the stage and fluidics state is kept.
        pumps: address → model, syringe and valve ports.
        lines: (pump, valve port) → the reagent line on it.
        output_port: the dispensing line's valve port (every pump).
        waste_port: a valve port whose line goes to waste (every pump), if any.
        line_ul: dead volume of each dispensing line (µL).
        seconds_per_move: simulated time per stage move (s).
        external_port: dry-run against the pumps on this port instead of a built-in emulator.
        time_scale, transport, faults: the built-in emulator's settings.
        scheduled: fault kind ("plunger", "valve", "stuck") → plunger moves before it.
        fault_pump: the pump scheduled faults hit (None: any).
        init_failure: the first initialisation of every built-in pump fails (error 1).
    """
    emulator = None
    if external_port is None:
        addresses = tuple(sorted(pumps))
        emulator = PumpEmulator(
            addresses,
            model=pumps[addresses[0]].model,
            time_scale=time_scale,
            transport=transport,
            faults=faults,
            pump_models={a: p.model for a, p in pumps.items()},
            pump_valve_ports={a: p.valve_ports for a, p in pumps.items()},
        )
        for kind, after in (scheduled or {}).items():
            if after is not None:
                emulator.schedule_fault(kind, after, fault_pump)
        if init_failure:
            for address in addresses:
                emulator.inject_init_failure(address)
    positioner = SimulatedPositioner(
        lab, clock, seconds_per_move=seconds_per_move, state_path=data_dir / "sim_stage.json"
    )
    bridge = FluidicsBridge(
        lab,
        clock,
        positioner,
        syringes_ul={a: p.syringe_ul for a, p in pumps.items()},
        lines=lines,
        output_ports=output_port,
        output_line_ul=line_ul,
        waste_ports={a: waste_port for a in pumps} if waste_port is not None else None,
        state_path=data_dir / "sim_fluidics.json",
        persist_syringes=external_port is not None,
    )
    if emulator is not None:
        bridge.attach(emulator)
    port = external_port if external_port is not None else emulator.port  # type: ignore[union-attr]
    return DryRunRig(port, positioner, bridge, emulator)
