"""The pump driver on a faulty link: does every move run exactly once? (issue 9)

For each protocol (OEM, DT) and seed, a fresh emulated XCalibur (500 µL) on a pty runs
``--cycles`` aspirate/dispense cycles of 40 µL through the real driver while the emulator
drops ``--drop-reply`` of its answers, flips one random bit in ``--garble-reply`` of them and
loses ``--drop-request`` of the host's blocks before they arrive. Printed per run: plunger
moves executed against those requested, µL aspirated and dispensed, the final position, any
exception, and the link counters (blocks, retries, bad frames, DT actions settled through
``Q`` and the position, actions sent again because they had not run), with the wall time; a
fault-free run of the same cycles is the baseline. Then medians and the worst seed.

A second section opens ``--sessions`` new driver sessions in a row on one emulator, as
successive processes would, each losing its first request, and initialises the pump each
time; the sessions end on every sequence number in turn. An init that is acknowledged but
never run (a stale OEM acknowledgement: the lost block's repeat matched the previous
session's last sequence number) is counted.

Quick run:  python benchmarks/pump_faults.py --seeds 3 --cycles 48
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

from instruments.pumps import PumpError, SyringePump
from simulators.pump_emulator import FaultConfig, PumpEmulator

VOLUME_UL = 40.0
SYRINGE_UL = 500.0
TIME_SCALE = 0.001


@dataclass
class Result:
    protocol: str
    seed: int | None
    moves: int
    expected_moves: int
    aspirated_ok: bool
    position_ok: bool
    error: str
    blocks: int
    retries: int
    bad_frames: int
    settled: int
    resent: int
    dropped: int
    garbled: int
    lost: int
    wall_s: float

    @property
    def exact(self) -> bool:
        return (
            not self.error
            and self.moves == self.expected_moves
            and self.aspirated_ok
            and self.position_ok
        )


def run_cycles(protocol: str, seed: int | None, cycles: int, faults: FaultConfig) -> Result:
    """``cycles`` aspirate/dispense pairs through the driver; what the firmware executed."""
    with PumpEmulator((1,), time_scale=TIME_SCALE, faults=faults) as emu:
        pump = SyringePump(
            emu.port,
            syringe_volume_ul=SYRINGE_UL,
            protocol=protocol,  # type: ignore[arg-type]
            max_retries=8,
            **emu.driver_options(),
        )
        started = time.monotonic()
        error = ""
        try:
            pump.initialize()
            for _ in range(cycles):
                pump.aspirate(VOLUME_UL, port="input")
                pump.dispense(VOLUME_UL, port="output")
        except PumpError as exc:
            error = f"{type(exc).__name__}: {exc}"
        wall = time.monotonic() - started
        state, stats = emu.pump(1), pump.session.stats
        increments = round(VOLUME_UL / pump.ul_per_increment)
        pump.close()
        return Result(
            protocol, seed, state.plunger_moves, 2 * cycles,
            state.aspirated == state.dispensed == cycles * increments,
            state.position == 0, error, stats.blocks, stats.retries, stats.bad_frames,
            stats.settled, stats.resent, emu.dropped, emu.garbled, emu.lost_requests, wall,
        )  # fmt: skip


def stale_acks(protocol: str, sessions: int) -> tuple[int, int]:
    """(inits not run, errors) over ``sessions`` successive sessions losing their first block."""
    not_run = errors = 0
    with PumpEmulator((1,), time_scale=TIME_SCALE) as emu:
        for index in range(sessions):
            with SyringePump(emu.port, protocol=protocol, **emu.driver_options()) as pump:  # type: ignore[arg-type]
                before = emu.pump(1).init_count
                emu.drop_next_requests(1)
                try:
                    pump.initialize()
                    pump.aspirate(10, port="input")
                    for _ in range(index % 7):  # end the session on every sequence number
                        pump.session.query("?")
                except PumpError:
                    errors += 1
                not_run += emu.pump(1).init_count == before
    return not_run, errors


def _row(r: Result) -> str:
    return (
        f"{r.protocol:4} {r.seed if r.seed is not None else '-':>4} "
        f"{r.moves:>5}/{r.expected_moves:<5} {'yes' if r.exact else 'NO':>5} "
        f"{r.blocks:>6} {r.retries:>6} {r.bad_frames:>5} {r.settled:>7} {r.resent:>6} "
        f"{r.dropped:>5} {r.garbled:>5} {r.lost:>5} {r.wall_s:>7.2f}  {r.error[:60]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cycles", type=int, default=96)
    parser.add_argument("--drop-reply", type=float, default=0.10)
    parser.add_argument("--garble-reply", type=float, default=0.10)
    parser.add_argument("--drop-request", type=float, default=0.05)
    parser.add_argument("--sessions", type=int, default=49)
    args = parser.parse_args()
    print(
        f"{args.cycles} cycles of {VOLUME_UL:g} µL; faults: {args.drop_reply:.0%} answers "
        f"dropped, {args.garble_reply:.0%} garbled, {args.drop_request:.0%} requests lost"
    )
    print("prot seed moves/wanted exact blocks retries bad settled resent drop garbl lost  wall_s")
    results: dict[str, list[Result]] = {}
    for protocol in ("oem", "dt"):
        baseline = run_cycles(protocol, None, args.cycles, FaultConfig())
        print(_row(baseline) + "  (no faults)")
        for seed in range(1, args.seeds + 1):
            faults = FaultConfig(args.drop_reply, args.garble_reply, seed, args.drop_request)
            result = run_cycles(protocol, seed, args.cycles, faults)
            results.setdefault(protocol, []).append(result)
            print(_row(result), flush=True)
    print("\nmedian / worst seed (wall time, s; blocks per cycle)")
    for protocol, runs in results.items():
        walls = [r.wall_s for r in runs]
        blocks = [r.blocks / args.cycles for r in runs]
        exact = sum(r.exact for r in runs)
        print(
            f"{protocol:4} exact {exact}/{len(runs)}  wall {statistics.median(walls):.2f} / "
            f"{max(walls):.2f}  blocks/cycle {statistics.median(blocks):.1f} / {max(blocks):.1f}"
        )
    print(f"\n{args.sessions} successive sessions, each losing its first request:")
    for protocol in ("oem", "dt"):
        not_run, errors = stale_acks(protocol, args.sessions)
        print(f"{protocol:4} inits acknowledged but not run: {not_run}, errors: {errors}")


if __name__ == "__main__":
    main()
