"""The Python pymmcore-plus devices over the simulated lab (simulators/mm_devices.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from simulators.clock import SimulatedClock
from simulators.mm_devices import make_simulated_core, simulated_scope
from simulators.world import PLATE_TYPES, SimulatedLab


@pytest.fixture
def core():
    clock = SimulatedClock()
    core = make_simulated_core(SimulatedLab(), clock, image_size=(128, 128), seed=3)
    core.setProperty("Plate", "Barcode", "P1")
    return core


def _snap(core, channel: str) -> np.ndarray:
    core.setConfig("Channel", channel)
    core.snapImage()
    return core.getImage()


def _bright(plane: np.ndarray) -> np.ndarray:
    smooth = ndimage.gaussian_filter(plane.astype(float), 1.0)
    return smooth > np.median(smooth) + 0.3 * (np.percentile(smooth, 99.9) - np.median(smooth))


def test_core_has_the_devices_channel_group_and_pixel_size(core):
    assert set(core.getLoadedDevices()) >= {"Camera", "XY", "Z", "Shutter", "Filter", "Plate"}
    assert list(core.getAvailableConfigs("Channel")) == ["DAPI", "GFP"]
    assert core.getChannelGroup() == "Channel"
    assert core.getPixelSizeUm() == pytest.approx(2.6)
    assert (core.getImageHeight(), core.getImageWidth()) == (128, 128)


def test_well_under_the_objective_follows_the_stage_and_plate_geometry(core):
    scope = simulated_scope(core)
    b3 = PLATE_TYPES["96"].well_centre_um("B03")
    assert scope.well_at(*b3) == "B03"
    assert scope.well_at(b3[0] + 4500.0, b3[1]) is None  # between B03 and B04
    assert scope.well_at(-5000.0, 0.0) is None
    core.setProperty("Plate", "Barcode", "")
    assert scope.well_at(*b3) is None  # no plate on the stage


def test_dapi_and_gfp_snaps_of_one_field_show_the_same_nuclei(core):
    scope = simulated_scope(core)
    core.setXYPosition(*PLATE_TYPES["96"].well_centre_um("C05"))
    dapi, gfp = _snap(core, "DAPI"), _snap(core, "GFP")
    assert len(scope.fields) == 1  # one field drawn, both channels rendered from it
    truth = scope.fields[0].truth
    assert truth["n_tumour"] > 5 and truth["n_normal"] > 5
    gfp_mask, dapi_mask = _bright(gfp), _bright(dapi)
    assert gfp_mask.sum() > 50
    assert (gfp_mask & dapi_mask).sum() / gfp_mask.sum() > 0.8  # GFP nuclei are DAPI nuclei
    assert dapi_mask.sum() > gfp_mask.sum()  # normal nuclei: DAPI only
    again = _snap(core, "DAPI")
    np.testing.assert_array_equal(again, dapi)  # same field, same time: same image


def test_moving_the_stage_draws_a_new_field(core):
    scope = simulated_scope(core)
    x, y = PLATE_TYPES["96"].well_centre_um("C05")
    core.setXYPosition(x, y)
    a = _snap(core, "DAPI")
    core.setXYPosition(x + 400.0, y)
    b = _snap(core, "DAPI")
    assert len(scope.fields) == 2 and not np.array_equal(a, b)


def test_outside_any_well_renders_background_only(core):
    core.setXYPosition(1000.0, 1000.0)
    img = _snap(core, "DAPI").astype(float)
    assert img.max() < img.mean() + 12 * img.std() and img.std() < 20
    assert len(simulated_scope(core).fields) == 0


def test_closed_shutter_without_autoshutter_gives_dark_frames(core):
    core.setXYPosition(*PLATE_TYPES["96"].well_centre_um("C05"))
    core.setAutoShutter(False)
    core.setShutterOpen(False)
    dark = _snap(core, "DAPI")
    assert abs(float(dark.mean()) - 100.0) < 3.0  # camera offset only
    core.setShutterOpen(True)
    lit = _snap(core, "DAPI")
    assert lit.mean() > dark.mean() + 20


def test_snaps_and_moves_advance_the_clock(core):
    clock = simulated_scope(core).clock
    core.setXYPosition(*PLATE_TYPES["96"].well_centre_um("A01"))
    t0 = clock.now()
    core.setXYPosition(*PLATE_TYPES["96"].well_centre_um("A02"))  # 9 mm
    assert clock.now() - t0 == pytest.approx(0.05 + 9000 / 20000)
    core.setExposure(100.0)
    t1 = clock.now()
    _snap(core, "DAPI")
    assert clock.now() - t1 == pytest.approx(0.1)
