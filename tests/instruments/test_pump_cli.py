"""`cellpilot pump` commands against an emulated pump on a pty."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from controller.cli.pump import pump_app

runner = CliRunner()


def _invoke(emulator, *args: str):
    return runner.invoke(pump_app, [*args, "--port", emulator.port, "--syringe-ul", "500"])


def test_init_aspirate_valve_dispense_status(emulator) -> None:
    emulator.time_scale = 0.0
    result = _invoke(emulator, "init", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["firmware"] == emulator.firmware
    assert _invoke(emulator, "aspirate", "200", "--valve-port", "input").exit_code == 0
    assert _invoke(emulator, "valve", "3").exit_code == 0
    result = _invoke(emulator, "dispense", "50", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["position_ul"] == 150 and data["valve"] == 3 and data["ready"]
    result = _invoke(emulator, "status")
    assert result.exit_code == 0 and "150" in result.stdout


def test_bad_volume_and_device_fault_exit_codes(emulator) -> None:
    emulator.time_scale = 0.0
    result = _invoke(emulator, "aspirate", "10", "--json")
    assert result.exit_code == 3 and "NotInitialized" in result.output
    assert _invoke(emulator, "init").exit_code == 0
    result = _invoke(emulator, "aspirate", "600")
    assert result.exit_code == 2 and "cannot aspirate" in result.output
    assert emulator.pump(1).plunger_moves == 0


def test_status_shows_a_pump_in_init_error(emulator) -> None:  # issue 9, item 7
    emulator.time_scale = 0.0
    emulator.inject_init_failure(1)
    result = _invoke(emulator, "init")
    assert result.exit_code == 3 and "InitializationError" in result.output
    result = _invoke(emulator, "status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["error_code"] == 1 and not data["initialized"] and data["ready"]


@pytest.mark.parametrize(
    "args",
    [
        ("aspirate", "inf"),
        ("aspirate", "nan"),
        ("dispense", "-inf"),
        ("status", "--syringe-ul", "nan"),
        ("status", "--syringe-ul", "inf"),
        ("status", "--syringe-ul", "0"),
    ],
)
def test_bad_numbers_exit_2(emulator, args) -> None:  # issue 9, item 8
    emulator.time_scale = 0.0
    result = runner.invoke(pump_app, [*args, "--port", emulator.port])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "error" in result.output.lower() and emulator.pump(1).plunger_moves == 0


def test_an_unopenable_port_is_bad_input(tmp_path) -> None:  # issue 9, item 8
    result = runner.invoke(pump_app, ["status", "--port", str(tmp_path / "ttyUSB9")])
    assert result.exit_code == 2 and "cannot open" in result.output


def test_ports_of_9_and_12_port_valves_and_a_3_port_valve() -> None:  # issue 9, item 5
    from simulators.pump_emulator import PumpEmulator

    emu = PumpEmulator((1, 2, 3), pump_valve_ports={1: 9, 2: 12}, pump_valve_types={3: 1})
    emu.time_scale = 0.0
    try:

        def pump(address: int, *args: str):
            return runner.invoke(
                pump_app, [*args, "--port", emu.port, "--address", str(address), "--json"]
            )

        for address in (1, 2, 3):
            assert pump(address, "init").exit_code == 0
        result = pump(1, "valve", "8")  # the pump reports a 9-port distribution valve
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["valve"] == 8
        assert pump(1, "valve", "10").exit_code == 2
        result = pump(1, "valve", "3", "--valve-ports", "6")
        assert result.exit_code == 2 and "9-port distribution" in result.output
        result = pump(2, "valve", "12", "--valve-ports", "12")  # not reported: as given
        assert result.exit_code == 0, result.output
        result = pump(3, "valve", "3")  # a 3-port Y valve has no numbered ports
        assert result.exit_code == 2 and "no numbered ports" in result.output
        assert pump(3, "valve", "bypass").exit_code == 0
        assert [emu.pump(a).valve for a in (1, 2, 3)] == ["8", "12", "b"]
    finally:
        emu.close()
