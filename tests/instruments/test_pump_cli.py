"""`cellpilot pump` commands against an emulated pump on a pty."""

from __future__ import annotations

import json

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
