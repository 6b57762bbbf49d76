"""``cellpilot pump``: commission and drive one syringe pump from the shell.

    cellpilot pump init      --port /dev/ttyUSB0 [--address 1] [--protocol oem|dt]
    cellpilot pump valve 3   --port ...          (or input / output / bypass / extra)
    cellpilot pump aspirate 250 [--valve-port input] --port ...
    cellpilot pump dispense 250 [--valve-port output] --port ...
    cellpilot pump status    --port ... [--json]

Every command takes ``--port URL --address N --protocol oem|dt --syringe-ul N --model M
--baud B``. Commands other than ``init`` adopt a pump initialised earlier. Exit codes: 0 done,
2 bad input (nothing was sent), 3 device fault (typed pump error, printed with its recovery).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from instruments.pumps.errors import PumpError, PumpVolumeError
from instruments.pumps.pump import SyringePump, ValvePort

pump_app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Drive a Cavro / Hamilton syringe pump."
)
console = Console()
err_console = Console(stderr=True)

PortOpt = Annotated[
    str, typer.Option("--port", envvar="CELLPILOT_PUMP_PORT", help="serial URL or device path")
]
AddressOpt = Annotated[int, typer.Option("--address", min=1, max=16, help="pump address 1-15")]
ProtocolOpt = Annotated[str, typer.Option("--protocol", help="oem (checksummed) or dt")]
SyringeOpt = Annotated[float, typer.Option("--syringe-ul", help="fitted syringe volume in µL")]
ModelOpt = Annotated[str, typer.Option("--model", help="xcalibur, xlp6000, psd4 or psd6")]
BaudOpt = Annotated[int, typer.Option("--baud", help="9600 or 38400")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


@contextmanager
def _pump(
    port: str, address: int, protocol: str, syringe_ul: float, model: str, baud: int
) -> Iterator[SyringePump]:
    try:
        pump = SyringePump(
            port,
            address,
            syringe_ul,
            protocol=protocol,
            model=model,
            baudrate=baud,  # type: ignore[arg-type]
        )
    except (ValueError, PumpError) as exc:
        _fail(str(exc), 2 if isinstance(exc, ValueError) else 3)
    try:
        yield pump
    except PumpVolumeError as exc:
        _fail(str(exc), 2)
    except PumpError as exc:
        _fail(f"{type(exc).__name__}: {exc}\nrecovery: {exc.recovery}", 3)
    finally:
        pump.close()


def _fail(message: str, code: int) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _show(data: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(data, default=str))
        return
    table = Table(title=title, show_header=False)
    for key, value in data.items():
        table.add_row(key, str(value))
    console.print(table)


def _port_arg(port: str) -> ValvePort:
    return int(port) if port.isdigit() else port.lower()


def _run(
    action: Callable[[SyringePump], None],
    title: str,
    port: str,
    address: int,
    protocol: str,
    syringe_ul: float,
    model: str,
    baud: int,
    as_json: bool,
    *,
    resume: bool = True,
) -> None:
    with _pump(port, address, protocol, syringe_ul, model, baud) as pump:
        if resume:
            pump.resume()
        action(pump)
        data = pump.status()
    _show(data, as_json, title)


@pump_app.command("init")
def init_cmd(
    port: PortOpt,
    address: AddressOpt = 1,
    protocol: ProtocolOpt = "oem",
    syringe_ul: SyringeOpt = 1000.0,
    model: ModelOpt = "xcalibur",
    baud: BaudOpt = 9600,
    as_json: JsonOpt = False,
) -> None:
    """Initialise plunger and valve (Z), then print the pump's identity."""
    with _pump(port, address, protocol, syringe_ul, model, baud) as pump:
        pump.initialize()
        data = pump.identify()
    _show(data, as_json, f"pump {address} initialised")


@pump_app.command("valve")
def valve_cmd(
    valve_port: Annotated[str, typer.Argument(metavar="PORT", help="1..n, input, output, bypass")],
    port: PortOpt,
    address: AddressOpt = 1,
    protocol: ProtocolOpt = "oem",
    syringe_ul: SyringeOpt = 1000.0,
    model: ModelOpt = "xcalibur",
    baud: BaudOpt = 9600,
    as_json: JsonOpt = False,
) -> None:
    """Turn the valve."""
    target = _port_arg(valve_port)
    _run(lambda p: p.set_valve(target), f"valve → {valve_port}",
         port, address, protocol, syringe_ul, model, baud, as_json)  # fmt: skip


@pump_app.command("aspirate")
def aspirate_cmd(
    ul: Annotated[float, typer.Argument(metavar="UL", help="volume in µL")],
    port: PortOpt,
    valve_port: Annotated[str | None, typer.Option("--valve-port", help="turn here first")] = None,
    address: AddressOpt = 1,
    protocol: ProtocolOpt = "oem",
    syringe_ul: SyringeOpt = 1000.0,
    model: ModelOpt = "xcalibur",
    baud: BaudOpt = 9600,
    as_json: JsonOpt = False,
) -> None:
    """Draw UL microlitres into the syringe."""
    target = _port_arg(valve_port) if valve_port else None
    _run(lambda p: p.aspirate(ul, port=target), f"aspirated {ul:g} µL",
         port, address, protocol, syringe_ul, model, baud, as_json)  # fmt: skip


@pump_app.command("dispense")
def dispense_cmd(
    ul: Annotated[float, typer.Argument(metavar="UL", help="volume in µL")],
    port: PortOpt,
    valve_port: Annotated[str | None, typer.Option("--valve-port", help="turn here first")] = None,
    address: AddressOpt = 1,
    protocol: ProtocolOpt = "oem",
    syringe_ul: SyringeOpt = 1000.0,
    model: ModelOpt = "xcalibur",
    baud: BaudOpt = 9600,
    as_json: JsonOpt = False,
) -> None:
    """Push UL microlitres out of the syringe."""
    target = _port_arg(valve_port) if valve_port else None
    _run(lambda p: p.dispense(ul, port=target), f"dispensed {ul:g} µL",
         port, address, protocol, syringe_ul, model, baud, as_json)  # fmt: skip


@pump_app.command("status")
def status_cmd(
    port: PortOpt,
    address: AddressOpt = 1,
    protocol: ProtocolOpt = "oem",
    syringe_ul: SyringeOpt = 1000.0,
    model: ModelOpt = "xcalibur",
    baud: BaudOpt = 9600,
    as_json: JsonOpt = False,
) -> None:
    """Ready flag, error code, position (µL), valve and firmware version."""
    with _pump(port, address, protocol, syringe_ul, model, baud) as pump:
        pump.resume()
        data = pump.status()
        data["firmware"] = pump.session.query("&")
    _show(data, as_json, f"pump {address}")


def register(app: typer.Typer) -> None:
    app.add_typer(pump_app, name="pump", help="drive one syringe pump by hand")
