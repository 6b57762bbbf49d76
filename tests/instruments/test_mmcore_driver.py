"""The registered ``mmcore`` microscope driver, and a dry-run campaign through the real MDA path."""

from __future__ import annotations

from pathlib import Path

import pytest
import tifffile
import yaml

from controller.rig.registry import BuildContext, InstrumentConfigError, build_instruments
from controller.spec import parse_campaign
from instruments.exceptions import InstrumentError
from instruments.mmcore_microscope import MMCoreMicroscope
from simulators.clock import SimulatedClock
from tests.controller.conftest import run_cli, small_campaign_data


def _spec(**settings):
    data = small_campaign_data(
        instruments={"microscope": {"driver": "mmcore", "settings": settings}}
    )
    return parse_campaign(data)


def _ctx(tmp_path: Path, dry_run: bool = False, **settings) -> BuildContext:
    return BuildContext(spec=_spec(**settings), data_dir=tmp_path, clock=SimulatedClock(),
                        dry_run=dry_run)  # fmt: skip


def test_driver_builds_the_simulated_core_from_settings(tmp_path):
    spec = _spec(config="simulated", image_size_px=64, channel_group="Channel")
    inst = build_instruments(spec, dry_run=False, data_dir=tmp_path, clock=SimulatedClock())
    try:
        mic = inst.microscope
        assert isinstance(mic, MMCoreMicroscope)
        assert mic.identify()["image_size"] == [64, 64]
        frames = mic.acquire_well("P1", "C03", ["DAPI", "GFP"], 2, 20.0)
        assert len(frames) == 2 and frames[0].image.shape == (2, 64, 64)
    finally:
        inst.close()


def test_dry_run_keeps_the_mmcore_driver_on_a_simulated_core(tmp_path):
    spec = _spec(config="/nonexistent/scope.cfg", z_stack={"range_um": 2, "step_um": 2})
    inst = build_instruments(spec, dry_run=True, data_dir=tmp_path, clock=SimulatedClock())
    try:
        assert isinstance(inst.microscope, MMCoreMicroscope)
        assert inst.microscope.z_stack is not None
        assert inst.microscope.identify()["core"] == "SimulatedMMCore"
    finally:
        inst.close()


def test_missing_config_file_names_the_path(tmp_path):
    from controller.rig.mmcore import mmcore_microscope

    ctx = _ctx(tmp_path, config=str(tmp_path / "rig" / "scope.cfg"))
    with pytest.raises(InstrumentError, match=r"rig/scope\.cfg.*does not exist"):
        mmcore_microscope(ctx.spec.instruments.microscope.settings, ctx)


def test_bad_settings_are_refused(tmp_path):
    from controller.rig.mmcore import mmcore_microscope

    with pytest.raises(InstrumentConfigError, match="unknown settings \\['exposure'\\]"):
        mmcore_microscope({"config": "simulated", "exposure": 3}, _ctx(tmp_path))
    with pytest.raises(InstrumentConfigError, match="config"):
        mmcore_microscope({}, _ctx(tmp_path))
    with pytest.raises(InstrumentConfigError, match="range_um"):
        mmcore_microscope({"config": "simulated", "z_stack": {"step_um": 1}}, _ctx(tmp_path))


def test_dry_run_campaign_through_the_mda_path(tmp_path):
    data = small_campaign_data(
        instruments={"microscope": {"driver": "mmcore",
                                    "settings": {"config": "simulated", "image_size_px": 96}}},
    )  # fmt: skip
    data["budget"] = {"rounds": 1}
    data["ledger"] = {
        "url": f"sqlite:///{tmp_path / 'ledger.db'}",
        "data_dir": str(tmp_path / "data"),
    }
    path = tmp_path / "mm.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = run_cli("run", str(path), "--dry-run", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "completed" in proc.stdout
    images = sorted((tmp_path / "data").rglob("*.ome.tif"))
    assert images
    with tifffile.TiffFile(images[0]) as tif:
        # 96 px: the mmcore driver's simulated camera made these, not the simulated driver (160)
        assert tif.series[0].shape == (2, 96, 96)
