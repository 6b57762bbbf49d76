"""Plugins through entry points: built-ins are found by name, a lab's package by pip install."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from analyzers import get_analyzer, list_analyzers
from analyzers.exceptions import DuplicateAnalyzer, UnknownAnalyzer
from controller.rig import available_drivers, find_driver
from planners import available_planners
from plugins import PluginLoadError, PluginRegistry
from protocols import registered_protocols

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin"


def test_builtins_are_entry_points() -> None:
    assert {"bayesian", "sobol", "random"} <= set(available_planners())
    assert "dose_response" in registered_protocols()
    assert "nuclei_coculture" in list_analyzers()
    assert {"simulated", "cavro", "pylabrobot"} <= set(available_drivers("liquid_handler"))
    assert {"simulated", "mmcore"} <= set(available_drivers("microscope"))
    cavro = find_driver("liquid_handler", "cavro")
    assert cavro is not None and cavro.dry_run and cavro.validate is not None


def test_registry_refuses_duplicates_and_names_unknown_plugins() -> None:
    reg: PluginRegistry[int] = PluginRegistry(
        "cellpilot.test-none", duplicate=DuplicateAnalyzer, unknown=UnknownAnalyzer
    )
    reg.register("one", 1)
    assert reg.get("one") == 1 and reg.names() == ["one"]
    with pytest.raises(DuplicateAnalyzer, match="'one' is already registered"):
        reg.register("one", 2)
    with pytest.raises(UnknownAnalyzer, match="'two'"):
        reg.get("two")
    reg.unregister("one")
    assert reg.names() == []


def test_an_entry_point_that_cannot_load_names_itself(tmp_path: Path) -> None:
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[cellpilot.test-broken]\nbad = no_such_module:thing\n")
    sys.path.insert(0, str(tmp_path))
    try:
        reg: PluginRegistry[object] = PluginRegistry(
            "cellpilot.test-broken", duplicate=DuplicateAnalyzer, unknown=UnknownAnalyzer
        )
        assert reg.names() == ["bad"]
        with pytest.raises(
            PluginLoadError, match="plugin 'bad' .*no_such_module:thing.*ModuleNotFoundError"
        ):
            reg.get("bad")
    finally:
        sys.path.remove(str(tmp_path))


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed by pip into a scratch folder (the venv stays untouched)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def _env(site: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }


def test_installed_plugin_is_found_by_name(plugin_site: Path) -> None:
    code = (
        "import json; from analyzers import list_analyzers; from controller.rig import available_drivers;"
        "print(json.dumps([list_analyzers(), available_drivers('liquid_handler')]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(plugin_site),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    analyzer_names, drivers = json.loads(out.stdout)
    assert "confluence" in analyzer_names and "audited" in drivers
    assert "confluence" not in list_analyzers()  # not installed in this process


def test_dry_run_campaign_uses_the_plugins_driver_and_analyzer(
    plugin_site: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load((PLUGIN / "campaign.yaml").read_text())
    # 256 px fields: smaller ones hold too few cells for the analyzer's Z' to pass QC
    data["simulation"]["image_size_px"] = 256
    data["ledger"] = {
        "url": f"sqlite:///{tmp_path / 'ledger.db'}",
        "data_dir": str(tmp_path / "data"),
    }
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    run = subprocess.run(
        [sys.executable, "-m", "controller.cli", "run", str(path), "--dry-run", "--quiet"],
        env=_env(plugin_site),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "status",
            "--campaign",
            "plugin_demo",
            "--json",
            "--ledger",
            data["ledger"]["url"],
        ],
        env=_env(plugin_site),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    summary = json.loads(status.stdout)
    assert summary["valid_experiments"] == 8
    assert summary["best"]["metric"] == "relative_confluence"
    rows = list(csv.DictReader((tmp_path / "data" / "liquid_audit.csv").open()))
    dispensed = [r for r in rows if r["operation"] == "dispense"]
    assert len(dispensed) >= 8 * 3 and all(float(r["volume_ul"]) > 0 for r in dispensed)
    assert get_analyzer("nuclei_coculture") is not None
