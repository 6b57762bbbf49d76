"""Run emulated pumps on their own, e.g. to dry-run a campaign against "someone else's" port.

    python -m simulators.pump_emulator --addresses 1,2,3 --valve-ports 9 --transport tcp

prints ``port: <url>`` (a pty path or ``socket://127.0.0.1:N``) on the first line of stdout,
then serves until interrupted (SIGINT or SIGTERM). The pumps keep their state (position,
initialisation) across the connections of successive processes, like powered pumps.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from simulators.pump_emulator.server import PumpEmulator
from simulators.pump_emulator.state import FaultConfig


def _pairs(text: str, cast: type) -> dict[int, object]:
    out: dict[int, object] = {}
    for item in filter(None, text.split(",")):
        address, _, value = item.partition("=")
        out[int(address)] = cast(value)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m simulators.pump_emulator")
    parser.add_argument("--addresses", default="1", help="comma-separated pump addresses")
    parser.add_argument("--model", default="xcalibur", help="xcalibur, xlp6000, psd4, psd6")
    parser.add_argument("--pump-models", default="", help="per pump, e.g. 2=xlp6000,3=xlp6000")
    parser.add_argument("--valve-ports", type=int, default=6)
    parser.add_argument("--valve-types", default="", help="per pump U code, e.g. 1=1 (3-port Y)")
    parser.add_argument("--transport", choices=("pty", "tcp"), default="pty")
    parser.add_argument("--tcp-port", type=int, default=0, help="0: any free port")
    parser.add_argument("--time-scale", type=float, default=1.0, help="x real move times")
    parser.add_argument("--drop-reply", type=float, default=0.0)
    parser.add_argument("--garble-reply", type=float, default=0.0)
    parser.add_argument("--drop-request", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Start the emulator, print its port, serve until SIGINT/SIGTERM."""
    args = parse_args(argv)
    emulator = PumpEmulator(
        tuple(int(a) for a in args.addresses.split(",")),
        model=args.model,
        valve_ports=args.valve_ports,
        time_scale=args.time_scale,
        transport=args.transport,
        tcp_port=args.tcp_port,
        faults=FaultConfig(args.drop_reply, args.garble_reply, args.seed, args.drop_request),
        pump_models=_pairs(args.pump_models, str),  # type: ignore[arg-type]
        pump_valve_types=_pairs(args.valve_types, int),  # type: ignore[arg-type]
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"port: {emulator.port}", flush=True)
    try:
        done.wait()
    finally:
        emulator.close()
        counts = {n: (p.plunger_moves, p.init_count) for n, p in emulator.pumps.items()}
        print(f"plunger moves, inits: {counts}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
